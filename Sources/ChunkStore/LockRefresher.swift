import Foundation

/// The state of one held lock object, shared by its ``RepositoryLockHandle`` and the thread that
/// rewrites the object every `refreshEvery` (the thread holds this, not the handle, so dropping the
/// handle releases the lock).
final class LockRefresher: @unchecked Sendable {
    let store: any ObjectStore
    let key: String
    let staleAfter: TimeInterval
    let refreshEvery: TimeInterval

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var info: LockInfo
    private var stopped = false
    private var lost: String?
    private var lastRefresh: Date
    private var lastError: String?
    private var refreshes = 0

    /// Serializes the writes and the delete of the object, so nothing rewrites it once it is released.
    private let io = NSLock()
    // Guarded by `io`.
    private var deleted = false

    init(store: any ObjectStore, key: String, info: LockInfo, staleAfter: TimeInterval, refreshEvery: TimeInterval) {
        self.store = store
        self.key = key
        self.info = info
        self.staleAfter = staleAfter
        self.refreshEvery = refreshEvery
        lastRefresh = info.refreshed
    }

    /// Starts the refreshing thread; it ends on ``stop()``, or when another process removed the object.
    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "chunkstore lock refresh"
        thread.start()
    }

    private func run() {
        condition.lock()
        defer { condition.unlock() }
        var due = Date().addingTimeInterval(refreshEvery)
        while !stopped, lost == nil {
            if Date() < due {
                _ = condition.wait(until: due)
                continue
            }
            condition.unlock()
            try? refresh()  // a failure is recorded; `check()` reports it once the lock could be judged stale
            condition.lock()
            due = Date().addingTimeInterval(refreshEvery)
        }
    }

    /// The lock as last written.
    var current: LockInfo { condition.withLock { info } }

    /// Refreshes completed so far.
    var refreshCount: Int { condition.withLock { refreshes } }

    /// Rewrites the object with `refreshed` = now, unless another process removed it (then the lock is lost).
    func refresh() throws {
        try io.withLock {
            let (info, stopped, lost) = condition.withLock { (self.info, self.stopped, self.lost) }
            if stopped { throw released() }
            if let lost { throw ChunkStoreError(.locked, lost) }
            do {
                guard try store.exists(key) else {
                    let why =
                        "lock \(key) (\(info.purpose)) was removed from \(store.location) by another process, which judged it stale "
                        + "(not refreshed for its stale time, or its process gone): what this process does is no longer protected; stop and start over with a new lock"
                    condition.withLock { self.lost = why }
                    throw ChunkStoreError(.locked, why)
                }
                var fresh = info
                fresh.refreshed = LockInfo.now()
                try store.put(key, try fresh.encoded())
                condition.withLock {
                    self.info = fresh
                    lastRefresh = fresh.refreshed
                    lastError = nil
                    refreshes += 1
                    condition.broadcast()
                }
            } catch let e as ChunkStoreError where e.code == .locked {
                throw e
            } catch {
                condition.withLock { lastError = "\(error)" }
                throw error
            }
        }
    }

    /// Throws when the lock can no longer be relied on: released, removed by another process, or not
    /// refreshed for longer than the stale time (another process may judge it stale at any moment).
    func check() throws {
        try condition.withLock {
            if stopped { throw released() }
            if let lost { throw ChunkStoreError(.locked, lost) }
            let age = Date().timeIntervalSince(lastRefresh)
            if age > staleAfter {
                throw ChunkStoreError(
                    .locked,
                    "lock \(key) in \(store.location) was last refreshed \(LockInfo.age(age)), longer than its stale time (\(LockInfo.span(staleAfter)))"
                        + (lastError.map { " (last refresh failed: \($0))" } ?? "")
                        + ": another process may treat it as gone; stop and start over with a new lock")
            }
        }
    }

    /// Stops refreshing and deletes the object. Idempotent; a failed delete is tried again on the next call.
    func stop() throws {
        condition.withLock {
            stopped = true
            condition.broadcast()
        }
        try io.withLock {
            guard !deleted else { return }
            try store.delete(key)
            deleted = true
        }
    }

    var isStopped: Bool { condition.withLock { stopped } }

    /// Waits until `count` refreshes have completed or `timeout` seconds passed; true when they have.
    func waitForRefreshes(_ count: Int, timeout: TimeInterval) -> Bool {
        condition.withLock {
            let deadline = Date().addingTimeInterval(timeout)
            while refreshes < count {
                if !condition.wait(until: deadline) { return refreshes >= count }
            }
            return true
        }
    }

    private func released() -> ChunkStoreError {
        ChunkStoreError(.misuse, "lock \(key) in \(store.location) was already released; take a new lock")
    }
}
