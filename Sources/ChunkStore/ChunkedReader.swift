import Crypto

/// Restores artifacts from a repository, streaming: the record's digest is checked first (its blob list
/// and size are the ones written, see ``ArtifactRecord/digest``); then the chunks are read in spans (the
/// blobs of one pack that lie together, one ranged read each: see ``ReadSpan``), each blob authenticated
/// (AES-GCM tag with the blob id bound), decompressed, re-named (HMAC of the plaintext must equal the
/// id) and handed to the sink in order. So the bytes handed over are exactly the ones the record was
/// written for. Reading and opening run on two threads of the reader's own, a few spans ahead of the
/// sink, so the caller's thread only hands bytes on.
///
/// ```swift
/// let reader = try ChunkedReader(repository: repo)
/// try reader.restore(record) { bytes in try pipe.write(bytes) }
/// ```
///
/// - Important: A failure throws after earlier blobs were already handed to the sink. The caller must
///   treat what the sink received as garbage when `restore` throws (do not swap it in).
///
/// Use from one thread at a time. Memory: about ``readAhead`` spans of ``ReadSpan/maximumBytes`` read
/// and opened (tens of MiB).
public final class ChunkedReader {
    /// The repository read from.
    public let repository: Repository
    /// The index used to locate blobs.
    public private(set) var index: RepositoryIndex
    private let codec: ZstdCodec
    /// Spans read and opened ahead of the sink.
    static let readAhead = 3
    /// Ranged reads of packs so far (one per span; for tests and progress).
    public private(set) var spansRead = 0

    /// A reader on `repository`, loading its index (or using `index` when the caller has it).
    public init(repository: Repository, index: RepositoryIndex? = nil) throws {
        self.repository = repository
        self.index = try index ?? repository.loadIndex()
        codec = try ZstdCodec()
    }

    /// Streams `record`'s bytes, in order, to `sink`. Throws (naming the artifact, blob and pack) on a
    /// missing or damaged blob; throws before handing over anything when the record does not match its
    /// digest (it was changed, or belongs to another repository) or names a blob in no index.
    public func restore(_ record: ArtifactRecord, to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try check(record)
        let spans = try ReadSpan.plan(record, index: index, location: repository.store.location)
        let repository = self.repository, name = record.name
        let ahead = OrderedReadAhead<[[UInt8]]>(count: spans.count, window: Self.readAhead, name: "chunkstore read \(name)") {
            let codec = try? ZstdCodec()
            return { n in
                guard let codec else { throw ChunkStoreError(.storage, "cannot make a zstd decompression context (out of memory?)") }
                return try Self.open(spans[n], repository: repository, codec: codec, artifact: name)
            }
        }
        defer { ahead.finish() }
        spansRead += spans.count
        var total: Int64 = 0
        for n in spans.indices {
            for plain in try ahead.take(n) {
                total += Int64(plain.count)
                try plain.withUnsafeBytes { try sink($0) }
            }
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
        let record = ArtifactRecord(name: artifact, blobs: [.init(id: id, size: 0)], size: 0, digest: "", newBytes: 0, reusedBytes: 0, storedBytes: 0)
        var span = try ReadSpan.plan(record, index: index, location: repository.store.location)[0]
        span.items[0].position = position
        span.items[0].size = span.items[0].location.plaintextLength
        return try Self.open(span, repository: repository, codec: codec, artifact: artifact)[0]
    }

    /// Reads `span`'s bytes and opens each of its blobs: their plaintexts, in order, each checked.
    private static func open(_ span: ReadSpan, repository: Repository, codec: ZstdCodec, artifact: String) throws -> [[UInt8]] {
        let packKey = Pack.key(span.pack)
        let bytes: [UInt8]
        do {
            bytes = try repository.store.get(packKey, range: span.range)
        } catch let e as ChunkStoreError where e.code == .objectMissing {
            throw ChunkStoreError(
                .objectMissing, "pack \(packKey) holding blob \(span.items[0].id.hex) of artifact \(artifact) is missing from \(repository.store.location)")
        }
        var out: [[UInt8]] = []
        out.reserveCapacity(span.items.count)
        for item in span.items {
            let loc = item.location
            // Whether the whole pack still hashes to its name is only worth knowing (and reading) when a
            // blob read from it fails: each blob is authenticated on its own.
            func what() -> String {
                let whole = try? repository.store.get(packKey)
                return "blob \(item.id.hex) (chunk \(item.position) of artifact \(artifact)) in pack \(packKey)"
                    + (whole.map { (try? Pack.checkID($0, id: span.pack)) != nil } ?? true ? "" : " (whose SHA-256 does not match its name: the pack is damaged)")
            }
            let start = loc.offset - span.range.lowerBound
            guard start + loc.length <= bytes.count else {
                throw ChunkStoreError(.damaged, "\(what()): the index places it at \(loc.offset)+\(loc.length), beyond the pack's end (\(span.range.lowerBound + bytes.count) bytes)")
            }
            let plain = try bytes.withUnsafeBytes {
                try Envelope.open(
                    UnsafeRawBufferPointer(rebasing: $0[start..<start + loc.length]), kind: .blob(item.id), key: repository.masterKey.encryptionKey,
                    codec: codec, expected: loc.plaintextLength, what: what())
            }
            guard repository.masterKey.blobID(of: plain) == item.id else {
                throw ChunkStoreError(.damaged, "\(what()): its plaintext does not hash to its id (HMAC mismatch)")
            }
            guard plain.count == item.size else {
                throw ChunkStoreError(.damaged, "blob \(item.id.hex) (chunk \(item.position) of artifact \(artifact)) is \(plain.count) bytes, the record says \(item.size)")
            }
            out.append(plain)
        }
        return out
    }
}
