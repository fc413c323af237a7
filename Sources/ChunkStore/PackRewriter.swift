/// Fills new packs with sealed blobs copied byte for byte from other packs (a sealed blob binds only its
/// blob id, not its pack or offset, so it moves without being opened again), storing each when it
/// reaches the pack size.
struct PackRewriter {
    let repository: Repository
    let packSize: Int
    let codec: ZstdCodec
    private var pack: [UInt8] = []
    private var entries: [PackEntry] = []
    /// Where the copied blobs are now.
    private(set) var index = RepositoryIndex()
    /// Packs stored, and their bytes.
    private(set) var packsWritten = 0
    private(set) var bytesWritten: Int64 = 0

    init(repository: Repository, packSize: Int, codec: ZstdCodec) {
        self.repository = repository
        self.packSize = packSize
        self.codec = codec
    }

    /// Appends one sealed blob (`entry` gives its id and lengths; its offset is replaced).
    mutating func add(_ sealed: UnsafeRawBufferPointer, entry: PackEntry) throws {
        entries.append(PackEntry(id: entry.id, offset: pack.count, length: sealed.count, plaintextLength: entry.plaintextLength))
        pack += sealed
        if pack.count >= packSize { try flush() }
    }

    /// Stores the pack being filled, if any.
    mutating func flush() throws {
        guard !entries.isEmpty else { return }
        let id = try Pack.finish(&pack, entries: entries, key: repository.masterKey.encryptionKey, codec: codec)
        try repository.store.put(Pack.key(id), pack)
        for e in entries {
            index.insert(e.id, BlobLocation(pack: id, offset: e.offset, length: e.length, plaintextLength: e.plaintextLength))
        }
        packsWritten += 1
        bytesWritten += Int64(pack.count)
        pack.removeAll(keepingCapacity: true)
        entries.removeAll()
    }

    /// The size of a pack of `blobs` blobs with `sealedBytes` of sealed blobs (its header not compressed).
    static func estimatedSize(blobs: Int, sealedBytes: Int) -> Int64 {
        Int64(sealedBytes + Envelope.overhead + 5 + 44 * blobs + Pack.trailerLength)
    }
}
