import Crypto

/// Where a blob is: its pack, and its sealed bytes' offset and length there, and its plaintext length.
public struct BlobLocation: Sendable, Equatable {
    /// The pack holding it.
    public var pack: PackID
    /// The sealed blob's first byte in the pack.
    public var offset: Int
    /// The sealed blob's length.
    public var length: Int
    /// The blob's plaintext length.
    public var plaintextLength: Int
}

/// The in-memory union of index objects: blob id → ``BlobLocation``. Pack ids are stored once each
/// (an entry holds a pack number), so an entry costs about 100 bytes of memory.
public struct RepositoryIndex: Sendable {
    private struct Entry: Sendable {
        var pack: Int32
        var offset: UInt32
        var length: UInt32
        var plaintextLength: UInt32
    }

    private var packs: [PackID] = []
    private var packNumbers: [PackID: Int32] = [:]
    private var entries: [BlobID: Entry] = [:]

    /// An empty index.
    public init() {}

    /// How many blobs it locates.
    public var count: Int { entries.count }
    /// Every pack it names.
    public var packIDs: [PackID] { packs }

    /// Whether the blob is located.
    public func contains(_ id: BlobID) -> Bool { entries[id] != nil }

    /// Where the blob is, or nil.
    public func location(of id: BlobID) -> BlobLocation? {
        guard let e = entries[id] else { return nil }
        return BlobLocation(pack: packs[Int(e.pack)], offset: Int(e.offset), length: Int(e.length), plaintextLength: Int(e.plaintextLength))
    }

    /// Records a location (a blob already located keeps its first location).
    public mutating func insert(_ id: BlobID, _ location: BlobLocation) {
        if entries[id] != nil { return }
        let number: Int32
        if let n = packNumbers[location.pack] {
            number = n
        } else {
            number = Int32(packs.count)
            packs.append(location.pack)
            packNumbers[location.pack] = number
        }
        entries[id] = Entry(pack: number, offset: UInt32(location.offset), length: UInt32(location.length), plaintextLength: UInt32(location.plaintextLength))
    }

    /// Adds every entry of `other`.
    public mutating func merge(_ other: RepositoryIndex) {
        for (id, e) in other.entries { insert(id, BlobLocation(pack: other.packs[Int(e.pack)], offset: Int(e.offset), length: Int(e.length), plaintextLength: Int(e.plaintextLength))) }
    }

    /// Calls `body` with every entry (in no particular order).
    func forEach(_ body: (BlobID, BlobLocation) throws -> Void) rethrows {
        for (id, e) in entries {
            try body(id, BlobLocation(pack: packs[Int(e.pack)], offset: Int(e.offset), length: Int(e.length), plaintextLength: Int(e.plaintextLength)))
        }
    }

    /// The entries split into indexes of about `maxBlobs` blobs each (a pack's blobs stay together, so a
    /// part holds more when one pack has more); none for an empty index.
    func split(maxBlobs: Int) -> [RepositoryIndex] {
        var byPack = [[(BlobID, Entry)]](repeating: [], count: packs.count)
        for (id, e) in entries { byPack[Int(e.pack)].append((id, e)) }
        var parts: [RepositoryIndex] = []
        var part = RepositoryIndex()
        for (n, blobs) in byPack.enumerated() where !blobs.isEmpty {
            if part.count > 0, part.count + blobs.count > maxBlobs {
                parts.append(part)
                part = RepositoryIndex()
            }
            for (id, e) in blobs {
                part.insert(id, BlobLocation(pack: packs[n], offset: Int(e.offset), length: Int(e.length), plaintextLength: Int(e.plaintextLength)))
            }
        }
        if part.count > 0 { parts.append(part) }
        return parts
    }

    // MARK: index objects

    /// The index sealed as an index object, and its key (`index/` + SHA-256 of the sealed bytes).
    func sealedObject(key: SymmetricKey, codec: ZstdCodec) throws -> (name: String, bytes: [UInt8]) {
        let sealed = try serialized().withUnsafeBytes { try Envelope.seal($0, kind: .index, key: key, codec: codec) }
        return ("index/" + BlobID(bytes: SHA256.hash(data: sealed))!.hex, sealed)
    }

    private static let magic: [UInt8] = Array("ACSI".utf8)

    /// The plaintext of an index object (before sealing): "ACSI", version 1, then per pack its id, its
    /// blob count and per blob: id, offset, length, plaintext length (u32 little-endian).
    func serialized() -> [UInt8] {
        var byPack = [[(BlobID, Entry)]](repeating: [], count: packs.count)
        for (id, e) in entries { byPack[Int(e.pack)].append((id, e)) }
        var w = ByteWriter()
        w.raw(Self.magic)
        w.u8(1)
        w.u32(UInt32(packs.count))
        for (n, pack) in packs.enumerated() {
            w.id(pack)
            let blobs = byPack[n].sorted { $0.1.offset < $1.1.offset }
            w.u32(UInt32(blobs.count))
            for (id, e) in blobs {
                w.id(id)
                w.u32(e.offset)
                w.u32(e.length)
                w.u32(e.plaintextLength)
            }
        }
        return w.bytes
    }

    /// Parses what ``serialized()`` made; `name` is the object's key, for messages.
    static func parse(_ bytes: [UInt8], name: String) throws -> RepositoryIndex {
        var r = ByteReader(bytes, what: "index object \(name)")
        guard try r.raw(4) == magic else { throw ChunkStoreError(.damaged, "index object \(name) does not start with ACSI: not an index object") }
        let version = try r.u8()
        guard version == 1 else { throw ChunkStoreError(.unsupportedFormat, "index object \(name) is version \(version); this build reads 1: upgrade") }
        var index = RepositoryIndex()
        let packCount = try r.u32()
        for _ in 0..<packCount {
            let pack = try r.id()
            let blobCount = try r.u32()
            for _ in 0..<blobCount {
                let id = try r.id()
                let offset = try r.u32(), length = try r.u32(), plain = try r.u32()
                index.insert(id, BlobLocation(pack: pack, offset: Int(offset), length: Int(length), plaintextLength: Int(plain)))
            }
        }
        guard r.atEnd else { throw ChunkStoreError(.damaged, "index object \(name) has bytes after its last entry") }
        return index
    }
}
