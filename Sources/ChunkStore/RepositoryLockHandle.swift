/// A lock held on a repository, from ``Repository/lock(exclusive:purpose:staleAfter:refreshEvery:)``.
///
/// While it lives, a thread of its own rewrites its lock object every `refreshEvery` (a new `refreshed`
/// time), so other processes see it as live. ``release()`` deletes the object; dropping the handle does
/// too. Keep it for as long as the work it protects runs:
///
/// ```swift
/// let lock = try repo.lock(exclusive: true, purpose: "prune")
/// defer { try? lock.release() }
/// let report = try repo.prune(referenced: ids, lock: lock)
/// ```
public final class RepositoryLockHandle: Sendable {
    /// The lock object's key, `locks/<64 hex digits>`.
    public let key: String
    /// Whether the lock is exclusive.
    public let isExclusive: Bool
    /// The store the lock is in (its ``ObjectStore/location``).
    public let location: String
    let refresher: LockRefresher

    init(refresher: LockRefresher, exclusive: Bool) {
        self.refresher = refresher
        key = refresher.key
        isExclusive = exclusive
        location = refresher.store.location
        refresher.start()
    }

    deinit {
        try? refresher.stop()
    }

    /// The lock object as last written (``LockInfo/refreshed`` moves on with each refresh).
    public var info: LockInfo { refresher.current }

    /// Rewrites the lock object now with a new `refreshed` time (the handle's thread does this every
    /// `refreshEvery`). Throws ``ChunkStoreErrorCode/locked`` when another process removed the object
    /// (it judged the lock stale): the work it protected is no longer protected and must stop.
    public func refresh() throws {
        try refresher.refresh()
    }

    /// Throws unless the lock can still be relied on: ``ChunkStoreErrorCode/misuse`` when released,
    /// ``ChunkStoreErrorCode/locked`` when another process removed it or its last successful refresh is
    /// older than its stale time.
    public func check() throws {
        try refresher.check()
    }

    /// Stops refreshing and deletes the lock object. Calling it again does nothing (unless the delete
    /// failed: then it is tried again).
    public func release() throws {
        try refresher.stop()
    }

    /// Whether ``release()`` was called.
    public var isReleased: Bool { refresher.isStopped }
}
