import Foundation

/// An artifact's chunks on their way to the session: a bounded FIFO and ``workers`` threads that store
/// them (``ChunkedWriter/store(chunk:id:codec:scratch:)``: dedup, compress, encrypt, pack). Chunks may be
/// sealed out of order (a pack's order does not matter) but are recorded in the artifact's order. So the
/// caller's thread (chunking, naming) and sealing share the cores: when chunking waits for sealing, two
/// chunks are sealed at once. Stored chunks' buffers come back to the writer for reuse. The first error
/// stops it and is thrown to the writer at its next call.
final class SealingQueue: @unchecked Sendable {
    /// Chunks that may wait; the writer blocks beyond this.
    static let limit = 4
    /// Sealing threads per artifact: two where there are two cores or more.
    static let workers = min(2, max(1, ProcessInfo.processInfo.activeProcessorCount))

    /// What was stored so far, in the artifact's order.
    struct Sealed {
        var blobs: [ArtifactRecord.Blob] = []
        var newBytes: Int64 = 0
        var reusedBytes: Int64 = 0
        var storedBytes: Int64 = 0
    }

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var waiting: [(position: Int, chunk: ChunkBuffer)] = []
    private var spare: [ChunkBuffer] = []
    private var enqueued = 0
    /// Chunks stored out of order, by position, until the ones before them are recorded.
    private var early: [Int: (blob: ArtifactRecord.Blob, new: Bool, stored: Int)] = [:]
    private var busy = 0
    private var closed = false
    private var failure: (any Error)?
    private var sealed = Sealed()

    init(session: ChunkedWriter, name: String) {
        for n in 0..<Self.workers {
            let thread = Thread { [self] in run(session: session) }
            thread.name = "chunkstore seal \(n) \(name)"
            thread.start()
        }
    }

    /// Totals so far (for progress).
    var progress: Sealed { condition.withLock { sealed } }

    /// Hands over the next chunk, waiting while ``limit`` are queued; throws a sealing thread's error.
    /// Returns an emptied buffer of an earlier chunk to fill next, when there is one.
    func enqueue(_ chunk: ChunkBuffer) throws -> ChunkBuffer? {
        try condition.withLock {
            while waiting.count >= Self.limit && failure == nil { condition.wait() }
            if let failure { throw failure }
            waiting.append((enqueued, chunk))
            enqueued += 1
            condition.broadcast()
            return spare.popLast()
        }
    }

    /// Waits until every chunk is stored, stops the threads and returns what they stored (or an error).
    func drain() throws -> Sealed {
        try condition.withLock {
            closed = true
            condition.broadcast()
            while (busy > 0 || !waiting.isEmpty) && failure == nil { condition.wait() }
            if let failure { throw failure }
            return sealed
        }
    }

    /// Stops the threads without waiting for what is queued (an artifact abandoned unfinished).
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
            let next: (position: Int, chunk: ChunkBuffer)? = condition.withLock {
                while waiting.isEmpty && !closed && failure == nil { condition.wait() }
                guard failure == nil, !waiting.isEmpty else { return nil }
                busy += 1
                return waiting.removeFirst()
            }
            guard let (position, chunk) = next else { return }
            do {
                let r = try session.store(chunk: chunk.bytes, id: chunk.id, codec: codec, scratch: &scratch)
                let blob = ArtifactRecord.Blob(id: r.id, size: chunk.count)
                chunk.reset()
                condition.withLock {
                    early[position] = (blob, r.new, r.stored)
                    // Record every chunk whose predecessors are all recorded.
                    while let done = early.removeValue(forKey: sealed.blobs.count) {
                        sealed.blobs.append(done.blob)
                        if done.new {
                            sealed.newBytes += Int64(done.blob.size)
                            sealed.storedBytes += Int64(done.stored)
                        } else {
                            sealed.reusedBytes += Int64(done.blob.size)
                        }
                    }
                    if spare.count <= Self.limit { spare.append(chunk) }
                    busy -= 1
                    condition.broadcast()
                }
            } catch {
                condition.withLock {
                    failure = error
                    busy -= 1
                    waiting.removeAll()
                    condition.broadcast()
                }
            }
        }
    }
}
