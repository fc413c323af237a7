import ChunkStore
import Crypto
import Foundation
import Synchronization

/// Checks the chunks of a chunked repository's artifacts for ``BackupVerifier``: with the repository
/// opened (its passphrase given), its index loaded once for every backup checked.
public final class ChunkCheck: @unchecked Sendable {
    /// The chunk store, opened.
    public let repository: ChunkStore.Repository
    /// The fraction of packs read when artifacts are checked whole (1: all; restic's
    /// `--read-data-subset`). The other packs are only checked to exist.
    public let readDataSubset: Double
    /// Checks artifacts whole by each referenced pack's SHA-256 against its name (a restore's preflight:
    /// any changed byte is found before anything is touched, at the cost of one hash per stored byte,
    /// on every core), instead of decrypting every chunk (`backup verify`); the restore then
    /// authenticates each chunk as it reads it.
    public let packHashesOnly: Bool
    private let lock = NSLock()
    private var index: RepositoryIndex?
    /// Whole reads so far: every backup checked by this check shares them, so a pack is read once however
    /// many backups use it.
    private var read = BlobCheck()

    public init(repository: ChunkStore.Repository, readDataSubset: Double = 1, packHashesOnly: Bool = false) {
        self.repository = repository
        self.readDataSubset = readDataSubset
        self.packHashesOnly = packHashesOnly
    }

    /// Packs whose SHA-256 is not their name (or that cannot be read), with why; read on every core.
    private func damagedPacks(_ packs: [PackID]) -> [PackID: String] {
        let store = repository.store
        let found = Mutex([PackID: String]())
        let workers = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount, packs.count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for i in stride(from: worker, to: packs.count, by: workers) {
                let pack = packs[i]
                do {
                    let bytes = try store.get(pack.packKey)
                    let digest = BlobID(bytes: SHA256.hash(data: bytes))!
                    if digest != pack {
                        found.withLock { $0[pack] = "pack \(pack.packKey) is damaged: its SHA-256 is \(digest.hex), not its name (\(bytes.count) bytes); restore it from another copy of the repository" }
                    }
                } catch {
                    found.withLock { $0[pack] = "pack \(pack.packKey) cannot be read: \(error)" }
                }
            }
        }
        return found.withLock { $0 }
    }

    /// Problems per record (by position in `records`): blobs in no index or whose pack is missing,
    /// always; with `contents`, every blob of the packs read (its tag, length and id) and the packs'
    /// own checksums.
    func problems(_ records: [ChunkStore.ArtifactRecord], contents: Bool) throws -> [Int: [String]] {
        let index: RepositoryIndex = try lock.withLock {
            if let existing = self.index { return existing }
            let loaded = try repository.loadIndex()
            self.index = loaded
            return loaded
        }
        let blobs = Set(records.flatMap { $0.blobs.map(\.id) })
        let check: BlobCheck
        if contents && !packHashesOnly && readDataSubset >= 1 {
            let known = lock.withLock { read }
            let fresh = blobs.subtracting(known.read).subtracting(known.problems.keys)
            if fresh.isEmpty {
                check = known
            } else {
                let more = try repository.verify(blobs: fresh, readDataSubset: 1, index: index)
                check = lock.withLock {
                    read.read.formUnion(more.read)
                    read.problems.merge(more.problems) { $1 }
                    read.damagedPacks.merge(more.damagedPacks) { $1 }
                    return read
                }
            }
        } else {
            check = try repository.verify(blobs: blobs, readDataSubset: contents && !packHashesOnly ? readDataSubset : 0, index: index)
        }
        var out: [Int: [String]] = [:]
        for damaged in DamagedArtifact.list(records, problems: check.problems) { out[damaged.recordIndex, default: []] += damaged.problems }
        if contents && packHashesOnly {
            var users: [PackID: Set<Int>] = [:]
            for (r, record) in records.enumerated() {
                for blob in record.blobs { if let loc = index.location(of: blob.id) { users[loc.pack, default: []].insert(r) } }
            }
            for (pack, problem) in damagedPacks(users.keys.sorted()) {
                for r in users[pack] ?? [] { out[r, default: []].append(problem) }
            }
        }
        // Each record's keyed digest of its chunk list: a list edited (or copied from another repository)
        // by anyone without the key is refused, as a restore would.
        for (r, record) in records.enumerated() where repository.masterKey.artifactDigest(size: record.size, blobs: record.blobs).hex != record.digest {
            out[r, default: []].append("its record's digest does not match its chunk list (edited, or from another repository)")
        }
        // A pack whose checksum or header is wrong while every blob still opens: the records that use it
        // restore today, but the pack is damaged and says so.
        if !check.damagedPacks.isEmpty {
            let broken = Set(check.damagedPacks.keys)
            for (r, record) in records.enumerated() {
                let packs = Set(record.blobs.compactMap { index.location(of: $0.id).map { $0.pack.packKey } })
                for pack in packs.intersection(broken).sorted() {
                    out[r, default: []].append(check.damagedPacks[pack]!)
                }
            }
        }
        return out
    }
}
