import Crypto

/// Writes one artifact into a ``ChunkedWriter`` session: feed it bytes as they come with
/// ``write(_:)-([UInt8])``, then ``finish()`` for its ``ArtifactRecord``.
///
/// Use from one thread at a time. Memory: the chunker's window (at most the maximum chunk size).
public final class ArtifactWriter {
    /// The artifact's name.
    public let name: String
    private let session: ChunkedWriter
    private var chunker: Chunker
    private var hasher = SHA256()
    private let codec: ZstdCodec
    private var blobs: [ArtifactRecord.Blob] = []
    private var finished = false

    /// Bytes written so far.
    public private(set) var size: Int64 = 0
    /// Plaintext bytes of chunks stored so far (new to the repository).
    public private(set) var newBytes: Int64 = 0
    /// Plaintext bytes of chunks found already stored so far.
    public private(set) var reusedBytes: Int64 = 0
    /// Sealed bytes added to packs so far.
    public private(set) var storedBytes: Int64 = 0

    init(session: ChunkedWriter, name: String) throws {
        self.session = session
        self.name = name
        chunker = Chunker(parameters: session.repository.config.chunker)
        codec = try ZstdCodec(level: session.compressionLevel)
    }

    /// Adds the next bytes of the artifact (any size; an empty buffer is fine).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !finished else { throw ChunkStoreError(.misuse, "artifact \(name) was already finished; start a new artifact to write more") }
        hasher.update(bufferPointer: bytes)
        size += Int64(bytes.count)
        try chunker.feed(bytes) { chunk in try add(chunk) }
    }

    /// Adds the next bytes of the artifact.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Stores the last chunk and returns the record. The record's blobs are durable once the session's
    /// ``ChunkedWriter/commit()`` returns.
    public func finish() throws -> ArtifactRecord {
        guard !finished else { throw ChunkStoreError(.misuse, "artifact \(name) was already finished") }
        try chunker.finish { chunk in try add(chunk) }
        finished = true
        let digest = BlobID(bytes: hasher.finalize())!.hex
        return ArtifactRecord(
            name: name, blobs: blobs, size: size, sha256: digest, newBytes: newBytes, reusedBytes: reusedBytes, storedBytes: storedBytes)
    }

    private func add(_ chunk: UnsafeRawBufferPointer) throws {
        let r = try session.store(chunk: chunk, codec: codec)
        blobs.append(ArtifactRecord.Blob(id: r.id, size: chunk.count))
        if r.new {
            newBytes += Int64(chunk.count)
            storedBytes += Int64(r.stored)
        } else {
            reusedBytes += Int64(chunk.count)
        }
    }
}
