import Crypto

/// Restores artifacts from a repository, streaming: the record's digest is checked first (its blob list
/// and size are the ones written, see ``ArtifactRecord/digest``); then each blob is fetched (its whole
/// pack, cached so consecutive blobs of one pack cost one fetch), authenticated (AES-GCM tag with the
/// blob id bound), decompressed, re-named (HMAC of the plaintext must equal the id) and handed to the
/// sink in order. So the bytes handed over are exactly the ones the record was written for.
///
/// ```swift
/// let reader = try ChunkedReader(repository: repo)
/// try reader.restore(record) { bytes in try pipe.write(bytes) }
/// ```
///
/// - Important: A failure throws after earlier blobs were already handed to the sink. The caller must
///   treat what the sink received as garbage when `restore` throws (do not swap it in).
///
/// Use from one thread at a time. Memory: one pack (about the pack size) plus one blob.
public final class ChunkedReader {
    /// The repository read from.
    public let repository: Repository
    /// The index used to locate blobs.
    public private(set) var index: RepositoryIndex
    private let codec: ZstdCodec
    private var cached: (id: PackID, bytes: [UInt8])?
    /// Packs fetched from the store so far (for tests and progress).
    public private(set) var packsFetched = 0

    /// A reader on `repository`, loading its index (or using `index` when the caller has it).
    public init(repository: Repository, index: RepositoryIndex? = nil) throws {
        self.repository = repository
        self.index = try index ?? repository.loadIndex()
        codec = try ZstdCodec()
    }

    /// Streams `record`'s bytes, in order, to `sink`. Throws (naming the artifact, blob and pack) on a
    /// missing or damaged blob; throws before handing over anything when the record does not match its
    /// digest (it was changed, or belongs to another repository).
    public func restore(_ record: ArtifactRecord, to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try check(record)
        var total: Int64 = 0
        for (n, blob) in record.blobs.enumerated() {
            let plain = try read(blob.id, artifact: record.name, position: n)
            guard plain.count == blob.size else {
                throw ChunkStoreError(.damaged, "blob \(blob.id.hex) (chunk \(n) of artifact \(record.name)) is \(plain.count) bytes, the record says \(blob.size)")
            }
            total += Int64(plain.count)
            try plain.withUnsafeBytes { try sink($0) }
        }
        guard total == record.size else {
            throw ChunkStoreError(
                .damaged,
                "artifact \(record.name) restored as \(total) bytes, the record says \(record.size): the record does not match its blobs; do not use the restored data")
        }
    }

    /// Checks that `record`'s blob list and size are the ones its writer recorded (its digest, under
    /// this repository's key), without reading any blob.
    public func check(_ record: ArtifactRecord) throws {
        let expected = repository.masterKey.artifactDigest(size: record.size, blobs: record.blobs).hex
        guard expected == record.digest.lowercased() else {
            throw ChunkStoreError(
                .damaged,
                "the record of artifact \(record.name) does not match its digest under \(repository.store.location)'s key: it was changed after it was "
                    + "written, or it belongs to another repository; restore from an intact copy of the backup's records")
        }
    }

    /// One blob's plaintext, checked.
    public func read(_ id: BlobID, artifact: String = "?", position: Int = 0) throws -> [UInt8] {
        guard let loc = index.location(of: id) else {
            throw ChunkStoreError(
                .damaged, "blob \(id.hex) (chunk \(position) of artifact \(artifact)) is in no index of \(repository.store.location): its pack was never committed or an index object is lost")
        }
        let pack = try fetch(loc.pack, blob: id, artifact: artifact)
        // Whether the whole pack still hashes to its name is only worth knowing (and computing) when a
        // blob read from it fails: each blob is authenticated on its own.
        func what() -> String {
            "blob \(id.hex) (chunk \(position) of artifact \(artifact)) in pack \(Pack.key(loc.pack))"
                + ((try? Pack.checkID(pack, id: loc.pack)) != nil ? "" : " (whose SHA-256 does not match its name: the pack is damaged)")
        }
        guard loc.offset + loc.length <= pack.count else {
            throw ChunkStoreError(.damaged, "\(what()): the index places it at \(loc.offset)+\(loc.length), beyond the pack's \(pack.count) bytes")
        }
        let plain = try pack.withUnsafeBytes {
            try Envelope.open(
                UnsafeRawBufferPointer(rebasing: $0[loc.offset..<loc.offset + loc.length]), kind: .blob(id), key: repository.masterKey.encryptionKey,
                codec: codec, expected: loc.plaintextLength, what: what())
        }
        guard repository.masterKey.blobID(of: plain) == id else {
            throw ChunkStoreError(.damaged, "\(what()): its plaintext does not hash to its id (HMAC mismatch)")
        }
        return plain
    }

    private func fetch(_ id: PackID, blob: BlobID, artifact: String) throws -> [UInt8] {
        if let cached, cached.id == id { return cached.bytes }
        cached = nil
        let bytes: [UInt8]
        do {
            bytes = try repository.store.get(Pack.key(id))
        } catch let e as ChunkStoreError where e.code == .objectMissing {
            throw ChunkStoreError(
                .objectMissing, "pack \(Pack.key(id)) holding blob \(blob.hex) of artifact \(artifact) is missing from \(repository.store.location)")
        }
        packsFetched += 1
        cached = (id, bytes)
        return bytes
    }
}
