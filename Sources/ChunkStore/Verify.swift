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

/// What ``Repository/verify(blobs:readDataSubset:index:)`` found, blob by blob.
public struct BlobCheck: Sendable, Equatable {
    /// Blobs that are missing or damaged, with why (restoring anything that needs them would fail).
    public var problems: [BlobID: String] = [:]
    /// Blobs whose pack was read and that were authenticated (or found damaged).
    public var read: Set<BlobID> = []
    /// Packs whose SHA-256 differs from their name, or whose header does not open, by pack key.
    public var damagedPacks: [String: String] = [:]
    /// Packs read, and packs only checked to exist (``readDataSubset`` below 1).
    public var packsChecked = 0
    public var packsSkipped = 0

    public init() {}
}

extension Repository {
    /// Checks `blobs`: every one is indexed and its pack exists (always); then, for each pack read (all
    /// of them, or a random `readDataSubset` fraction; none for 0), its SHA-256 against its name, its
    /// header, and every one of `blobs` in it: tag, length and id (HMAC). Each pack is read once.
    public func verify(blobs: Set<BlobID>, readDataSubset: Double = 1.0, index: RepositoryIndex? = nil) throws -> BlobCheck {
        guard readDataSubset >= 0, readDataSubset <= 1 else {
            throw ChunkStoreError(.invalidArgument, "readDataSubset \(readDataSubset) is out of range: give a fraction in [0, 1] (0: check that every blob is indexed and its pack exists, read nothing)")
        }
        let index = try index ?? loadIndex()
        let existing = Set(try store.list(prefix: "data/").compactMap(Pack.id(fromKey:)))
        var check = BlobCheck()
        var byPack: [PackID: [BlobID]] = [:]
        for id in blobs.sorted() {
            guard let loc = index.location(of: id) else {
                check.problems[id] = "blob \(id.hex) is in no index"
                continue
            }
            guard existing.contains(loc.pack) else {
                check.problems[id] = "blob \(id.hex): its pack \(Pack.key(loc.pack)) is missing"
                continue
            }
            byPack[loc.pack, default: []].append(id)
        }
        let codec = try ZstdCodec()
        for (packID, ids) in byPack.sorted(by: { $0.key < $1.key }) {
            if readDataSubset < 1, Double.random(in: 0..<1) >= readDataSubset {
                check.packsSkipped += 1
                continue
            }
            check.packsChecked += 1
            let bytes = try store.get(Pack.key(packID))
            do {
                try Pack.checkID(bytes, id: packID)
            } catch let e as ChunkStoreError {
                check.damagedPacks[Pack.key(packID)] = e.message
            }
            var header: [BlobID: PackEntry] = [:]
            do {
                for e in try Pack.entries(of: bytes, id: packID, key: masterKey.encryptionKey, codec: codec) { header[e.id] = e }
            } catch let e as ChunkStoreError {
                check.damagedPacks[Pack.key(packID)] = e.message
            }
            for id in ids {
                check.read.insert(id)
                let loc = index.location(of: id)!
                let what = "blob \(id.hex) in pack \(Pack.key(packID))"
                guard loc.offset + loc.length <= bytes.count else {
                    check.problems[id] = "\(what) lies beyond the pack's end"
                    continue
                }
                do {
                    let plain = try bytes.withUnsafeBytes {
                        try Envelope.open(
                            UnsafeRawBufferPointer(rebasing: $0[loc.offset..<loc.offset + loc.length]), kind: .blob(id), key: masterKey.encryptionKey,
                            codec: codec, expected: loc.plaintextLength, what: what)
                    }
                    if masterKey.blobID(of: plain) != id { check.problems[id] = "\(what): its plaintext does not hash to its id" }
                } catch let e as ChunkStoreError {
                    check.problems[id] = e.message
                    continue
                }
                if !header.isEmpty, let h = header[id], h.offset != loc.offset || h.length != loc.length {
                    check.damagedPacks[Pack.key(packID)] = "its header places blob \(id.hex) at \(h.offset)+\(h.length), the index at \(loc.offset)+\(loc.length)"
                }
            }
        }
        return check
    }

    /// Checks what `records` need (``verify(blobs:readDataSubset:index:)`` over all their blobs, each pack
    /// read once) and returns the damaged artifacts and why.
    public func verify(records: [ArtifactRecord], readDataSubset: Double = 1.0, index: RepositoryIndex? = nil) throws -> VerifyReport {
        let check = try verify(blobs: Set(records.flatMap { $0.blobs.map(\.id) }), readDataSubset: readDataSubset, index: index)
        var report = VerifyReport()
        report.damagedPacks = check.damagedPacks
        report.packsChecked = check.packsChecked
        report.packsSkipped = check.packsSkipped
        report.blobsChecked = check.read.count
        report.damaged = DamagedArtifact.list(records, problems: check.problems)
        return report
    }
}

extension DamagedArtifact {
    /// The records that need a blob with a problem, each problem named with the chunk's position.
    public static func list(_ records: [ArtifactRecord], problems: [BlobID: String]) -> [DamagedArtifact] {
        guard !problems.isEmpty else { return [] }
        return records.enumerated().compactMap { r, record in
            let found = record.blobs.enumerated().compactMap { n, blob in problems[blob.id].map { "chunk \(n): \($0)" } }
            return found.isEmpty ? nil : DamagedArtifact(recordIndex: r, name: record.name, problems: found)
        }
    }
}
