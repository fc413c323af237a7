import Foundation

/// An artifact ``Repository/verify(records:readDataSubset:index:)`` found damaged, and why.
public struct DamagedArtifact: Sendable, Equatable {
    /// The record's position in the list given.
    public var recordIndex: Int
    /// The record's name.
    public var name: String
    /// What is wrong (one line per problem: blob, pack, reason).
    public var problems: [String]
}

/// What ``Repository/verify(records:readDataSubset:index:)`` found.
public struct VerifyReport: Sendable, Equatable {
    /// Artifacts with a missing or damaged blob (restoring them would fail).
    public var damaged: [DamagedArtifact] = []
    /// Packs whose SHA-256 differs from their name, or whose header does not open, with the reason;
    /// their intact blobs still restore, but the pack should be replaced from a copy.
    public var damagedPacks: [String: String] = [:]
    /// Packs read and checked.
    public var packsChecked = 0
    /// Packs referenced but not read (``readDataSubset`` below 1).
    public var packsSkipped = 0
    /// Blobs authenticated.
    public var blobsChecked = 0

    /// True when nothing is damaged.
    public var isClean: Bool { damaged.isEmpty && damagedPacks.isEmpty }
}

extension Repository {
    /// Checks what `records` need: every blob is indexed and its pack exists (always); then, for each pack
    /// read (all of them, or a random `readDataSubset` fraction; none for 0), its SHA-256 against its name, its header,
    /// and every referenced blob's tag, length and id (HMAC). Returns the damaged artifacts and why.
    public func verify(records: [ArtifactRecord], readDataSubset: Double = 1.0, index: RepositoryIndex? = nil) throws -> VerifyReport {
        guard readDataSubset >= 0, readDataSubset <= 1 else {
            throw ChunkStoreError(.invalidArgument, "readDataSubset \(readDataSubset) is out of range: give a fraction in [0, 1] (0: check that every blob is indexed and its pack exists, read nothing)")
        }
        let index = try index ?? loadIndex()
        let existing = Set(try store.list(prefix: "data/").compactMap(Pack.id(fromKey:)))
        var problems: [Int: [String]] = [:]
        var users: [BlobID: [Int]] = [:]
        var byPack: [PackID: Set<BlobID>] = [:]
        for (r, record) in records.enumerated() {
            for (n, blob) in record.blobs.enumerated() {
                if users[blob.id]?.last != r { users[blob.id, default: []].append(r) }
                guard let loc = index.location(of: blob.id) else {
                    problems[r, default: []].append("blob \(blob.id.hex) (chunk \(n)) is in no index")
                    continue
                }
                guard existing.contains(loc.pack) else {
                    problems[r, default: []].append("blob \(blob.id.hex) (chunk \(n)): its pack \(Pack.key(loc.pack)) is missing")
                    continue
                }
                byPack[loc.pack, default: []].insert(blob.id)
            }
        }
        var report = VerifyReport()
        let codec = try ZstdCodec()
        for (packID, blobs) in byPack.sorted(by: { $0.key < $1.key }) {
            if readDataSubset < 1, Double.random(in: 0..<1) >= readDataSubset {
                report.packsSkipped += 1
                continue
            }
            report.packsChecked += 1
            let bytes = try store.get(Pack.key(packID))
            do {
                try Pack.checkID(bytes, id: packID)
            } catch let e as ChunkStoreError {
                report.damagedPacks[Pack.key(packID)] = e.message
            }
            var header: [BlobID: PackEntry] = [:]
            do {
                for e in try Pack.entries(of: bytes, id: packID, key: masterKey.encryptionKey, codec: codec) { header[e.id] = e }
            } catch let e as ChunkStoreError {
                report.damagedPacks[Pack.key(packID)] = e.message
            }
            for id in blobs.sorted() {
                let loc = index.location(of: id)!
                let what = "blob \(id.hex) in pack \(Pack.key(packID))"
                var problem: String?
                if loc.offset + loc.length > bytes.count {
                    problem = "\(what) lies beyond the pack's end"
                } else {
                    report.blobsChecked += 1
                    do {
                        let plain = try bytes.withUnsafeBytes {
                            try Envelope.open(
                                UnsafeRawBufferPointer(rebasing: $0[loc.offset..<loc.offset + loc.length]), kind: .blob(id), key: masterKey.encryptionKey,
                                codec: codec, expected: loc.plaintextLength, what: what)
                        }
                        if masterKey.blobID(of: plain) != id { problem = "\(what): its plaintext does not hash to its id" }
                    } catch let e as ChunkStoreError {
                        problem = e.message
                    }
                }
                if problem == nil, !header.isEmpty, let h = header[id], h.offset != loc.offset || h.length != loc.length {
                    report.damagedPacks[Pack.key(packID)] = "its header places blob \(id.hex) at \(h.offset)+\(h.length), the index at \(loc.offset)+\(loc.length)"
                }
                if let problem { for r in users[id] ?? [] { problems[r, default: []].append(problem) } }
            }
        }
        report.damaged = problems.keys.sorted().map { DamagedArtifact(recordIndex: $0, name: records[$0].name, problems: problems[$0]!) }
        return report
    }
}
