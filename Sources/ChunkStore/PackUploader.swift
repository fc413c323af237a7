import Foundation

/// Stores a session's closed packs on a thread of its own, in order, so that sealing goes on while a
/// pack is written (a folder store's write and fsync, an S3 PUT). At most ``limit`` packs wait behind
/// the one being stored; the session blocks beyond that. The first failure is kept: every later call
/// throws it (the session's packs after it would be named by an index whose packs are missing).
///
/// The thread starts with the first pack and ends with ``close()``. Emptied pack buffers come back
/// for reuse, so a session allocates at most a few.
final class PackUploader: @unchecked Sendable {
    /// Packs that may wait behind the one being stored.
    static let limit = 1

    private let store: any ObjectStore
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var waiting: [(key: String, bytes: [UInt8])] = []
    private var spare: [[UInt8]] = []
    private var started = false
    private var busy = false
    private var closed = false
    private var failure: (any Error)?

    init(store: any ObjectStore) {
        self.store = store
    }

    /// Queues `bytes` to be stored under `key`, waiting while ``limit`` packs wait; throws an earlier
    /// failure. Returns an emptied buffer (capacity kept) of an earlier pack to fill next, if any.
    func enqueue(key: String, bytes: [UInt8]) throws -> [UInt8]? {
        try condition.withLock {
            if !started {
                started = true
                let thread = Thread { [self] in run() }
                thread.name = "chunkstore packs"
                thread.start()
            }
            while waiting.count >= Self.limit && failure == nil { condition.wait() }
            if let failure { throw failure }
            waiting.append((key, bytes))
            condition.broadcast()
            return spare.popLast()
        }
    }

    /// Waits until every pack queued is stored; throws the first failure.
    func drain() throws {
        try condition.withLock {
            while (busy || !waiting.isEmpty) && failure == nil { condition.wait() }
            if let failure { throw failure }
        }
    }

    /// Throws the first failure, if any, without waiting.
    func check() throws {
        try condition.withLock {
            if let failure { throw failure }
        }
    }

    /// Stops the thread after the pack being stored; packs still waiting are dropped (a session that
    /// ends without a commit: nothing names them anyway).
    func close() {
        condition.withLock {
            closed = true
            waiting.removeAll()
            condition.broadcast()
        }
    }

    private func run() {
        while true {
            let next: (key: String, bytes: [UInt8])? = condition.withLock {
                while waiting.isEmpty && !closed { condition.wait() }
                guard failure == nil, !waiting.isEmpty else { return nil }
                busy = true
                return waiting.removeFirst()
            }
            guard var next else { return }
            do {
                try store.put(next.key, next.bytes)
                next.bytes.removeAll(keepingCapacity: true)
                let emptied = next.bytes
                condition.withLock {
                    if spare.count <= Self.limit { spare.append(emptied) }
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
