import Foundation

/// An artifact's chunks on their way to the session: a bounded FIFO and the one thread that stores them
/// (``ChunkedWriter/store(chunk:id:codec:scratch:)``: name, dedup, compress, encrypt, pack), in order.
/// Stored chunks' buffers come back to the writer for reuse. The first error stops it and is thrown to
/// the writer at its next call.
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
    private var waiting: [ChunkBuffer] = []
    private var spare: [ChunkBuffer] = []
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
    /// Returns an emptied buffer of an earlier chunk to fill next, when there is one.
    func enqueue(_ chunk: ChunkBuffer) throws -> ChunkBuffer? {
        try condition.withLock {
            while waiting.count >= Self.limit && failure == nil { condition.wait() }
            if let failure { throw failure }
            waiting.append(chunk)
            condition.broadcast()
            return spare.popLast()
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
        var scratch: [UInt8] = []
        while true {
            let chunk: ChunkBuffer? = condition.withLock {
                while waiting.isEmpty && !closed { condition.wait() }
                guard failure == nil, !waiting.isEmpty else { return nil }
                busy = true
                return waiting.removeFirst()
            }
            guard let chunk else { return }
            do {
                let r = try session.store(chunk: chunk.bytes, id: chunk.id, codec: codec, scratch: &scratch)
                let size = chunk.count
                chunk.reset()
                condition.withLock {
                    sealed.blobs.append(ArtifactRecord.Blob(id: r.id, size: size))
                    if r.new {
                        sealed.newBytes += Int64(size)
                        sealed.storedBytes += Int64(r.stored)
                    } else {
                        sealed.reusedBytes += Int64(size)
                    }
                    if spare.count <= Self.limit { spare.append(chunk) }
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
