import ChunkStore
import Foundation

/// Checks the chunks of a chunked repository's artifacts for ``BackupVerifier``: with the repository
/// opened (its passphrase given), its index loaded once for every backup checked.
public final class ChunkCheck: @unchecked Sendable {
    /// The chunk store, opened.
    public let repository: ChunkStore.Repository
    /// The fraction of packs read when artifacts are checked whole (1: all; restic's
    /// `--read-data-subset`). The other packs are only checked to exist.
    public let readDataSubset: Double
    private let lock = NSLock()
    private var index: RepositoryIndex?

    public init(repository: ChunkStore.Repository, readDataSubset: Double = 1) {
        self.repository = repository
        self.readDataSubset = readDataSubset
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
        let report = try repository.verify(records: records, readDataSubset: contents ? readDataSubset : 0, index: index)
        var out: [Int: [String]] = [:]
        // Each record's keyed digest of its chunk list: a list edited (or copied from another repository)
        // by anyone without the key is refused, as a restore would.
        for (r, record) in records.enumerated() where repository.masterKey.artifactDigest(size: record.size, blobs: record.blobs).hex != record.digest {
            out[r, default: []].append("its record's digest does not match its chunk list (edited, or from another repository)")
        }
        for damaged in report.damaged { out[damaged.recordIndex, default: []] += damaged.problems }
        // A pack whose checksum or header is wrong while every blob still opens: the records that use it
        // restore today, but the pack is damaged and says so.
        if !report.damagedPacks.isEmpty {
            let broken = Set(report.damagedPacks.keys)
            for (r, record) in records.enumerated() {
                let packs = Set(record.blobs.compactMap { index.location(of: $0.id).map { $0.pack.packKey } })
                for pack in packs.intersection(broken).sorted() {
                    out[r, default: []].append(report.damagedPacks[pack]!)
                }
            }
        }
        return out
    }
}
