import Crypto
import Foundation

/// Writes one artifact into a ``ChunkedWriter`` session: feed it bytes as they come with
/// ``write(_:)-([UInt8])``, then ``finish()`` for its ``ArtifactRecord``.
///
/// The caller's thread cuts chunks and hashes the whole artifact; a sealing thread of the artifact's
/// own names, compresses, encrypts and packs them, in order, so the two halves run on two cores.
/// Use from one thread at a time. Memory: the chunker's window plus up to ``SealingQueue/limit``
/// chunks waiting to be sealed (each at most the maximum chunk size).
public final class ArtifactWriter {
    /// The artifact's name.
    public let name: String
    private let session: ChunkedWriter
    private var chunker: Chunker
    private var hasher = SHA256()
    private let sealing: SealingQueue
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
        sealing = SealingQueue(session: session, name: name)
    }

    deinit {
        sealing.close()
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
        let sealed = try sealing.drain()
        newBytes = sealed.newBytes
        reusedBytes = sealed.reusedBytes
        storedBytes = sealed.storedBytes
        let digest = BlobID(bytes: hasher.finalize())!.hex
        return ArtifactRecord(
            name: name, blobs: sealed.blobs, size: size, sha256: digest, newBytes: newBytes, reusedBytes: reusedBytes, storedBytes: storedBytes)
    }

    private func add(_ chunk: UnsafeRawBufferPointer) throws {
        try sealing.enqueue(Array(chunk))
        let progress = sealing.progress
        newBytes = progress.newBytes
        reusedBytes = progress.reusedBytes
        storedBytes = progress.storedBytes
    }
}

/// An artifact's chunks on their way to the session: a bounded FIFO and the one thread that stores them
/// (``ChunkedWriter/store(chunk:codec:)``: name, dedup, compress, encrypt, pack), in order. The first
/// error stops it and is thrown to the writer at its next call.
final class SealingQueue: @unchecked Sendable {
    /// Chunks that may wait; the writer blocks beyond this.
    static let limit = 4

    /// What was stored so far, in the artifact's order.
    struct Sealed {
        var blobs: [ArtifactRecord.Blob] = []
        var newBytes: Int64 = 0
        var reusedBytes: Int64 = 0
        var storedBytes: Int64 = 0
    }

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var waiting: [[UInt8]] = []
    private var busy = false
    private var closed = false
    private var failure: (any Error)?
    private var sealed = Sealed()

    init(session: ChunkedWriter, name: String) {
        let thread = Thread { [self] in run(session: session) }
        thread.name = "chunkstore seal \(name)"
        thread.start()
    }

    /// Totals so far (for progress).
    var progress: Sealed { condition.withLock { sealed } }

    /// Hands over the next chunk, waiting while ``limit`` are queued; throws the sealing thread's error.
    func enqueue(_ chunk: [UInt8]) throws {
        try condition.withLock {
            while waiting.count >= Self.limit && failure == nil { condition.wait() }
            if let failure { throw failure }
            waiting.append(chunk)
            condition.broadcast()
        }
    }

    /// Waits until every chunk is stored, stops the thread and returns what it stored (or its error).
    func drain() throws -> Sealed {
        try condition.withLock {
            closed = true
            condition.broadcast()
            while (busy || !waiting.isEmpty) && failure == nil { condition.wait() }
            if let failure { throw failure }
            return sealed
        }
    }

    /// Stops the thread without waiting for what is queued (an artifact abandoned unfinished).
    func close() {
        condition.withLock {
            closed = true
            waiting.removeAll()
            condition.broadcast()
        }
    }

    private func run(session: ChunkedWriter) {
        let codec: ZstdCodec
        do {
            codec = try ZstdCodec(level: session.compressionLevel)
        } catch {
            condition.withLock {
                failure = error
                condition.broadcast()
            }
            return
        }
        while true {
            let chunk: [UInt8]? = condition.withLock {
                while waiting.isEmpty && !closed { condition.wait() }
                guard failure == nil, !waiting.isEmpty else { return nil }
                busy = true
                return waiting.removeFirst()
            }
            guard let chunk else { return }
            do {
                let r = try chunk.withUnsafeBytes { try session.store(chunk: $0, codec: codec) }
                condition.withLock {
                    sealed.blobs.append(ArtifactRecord.Blob(id: r.id, size: chunk.count))
                    if r.new {
                        sealed.newBytes += Int64(chunk.count)
                        sealed.storedBytes += Int64(r.stored)
                    } else {
                        sealed.reusedBytes += Int64(chunk.count)
                    }
                    busy = false
                    condition.broadcast()
                }
            } catch {
                condition.withLock {
                    failure = error
                    busy = false
                    waiting.removeAll()
                    condition.broadcast()
                }
            }
        }
    }
}
