import Foundation

extension Repository {
    /// Takes a lock on the repository: writes a lock object `locks/<random id>` (``LockInfo``), then lists
    /// `locks/`. A shared lock conflicts with any live exclusive lock; an exclusive lock with any other
    /// live lock. On a conflict the new object is deleted again and ``ChunkStoreErrorCode/locked`` is
    /// thrown naming the holder. Because every locker writes before it lists, two lockers racing for
    /// conflicting locks cannot both succeed (both may fail; try again later).
    ///
    /// A lock is stale, and ignored, when its `refreshed` time is older than `staleAfter`, or when it was
    /// taken on this host (same hostname) by a process that no longer exists (`kill(pid, 0)` fails with
    /// ESRCH: killed with -9, crashed). An exclusive locker deletes the stale locks it saw (best effort).
    /// Every process using a repository should use the same `staleAfter`.
    ///
    /// The returned handle rewrites its object every `refreshEvery` (which must be shorter than
    /// `staleAfter`) until it is released or dropped.
    ///
    /// Who takes what (``ChunkedWriter`` and ``ChunkedReader`` do not lock by themselves: their caller
    /// does): a writer session, from before it loads the index until after its last commit, and a restore
    /// take shared locks; ``prune(referenced:lock:repackUnusedAbove:packSize:dryRun:progress:)`` needs an
    /// exclusive one.
    public func lock(
        exclusive: Bool, purpose: String, staleAfter: Duration = .seconds(30 * 60), refreshEvery: Duration = .seconds(5 * 60)
    ) throws -> RepositoryLockHandle {
        try Self.lock(store: store, exclusive: exclusive, purpose: purpose, staleAfter: staleAfter, refreshEvery: refreshEvery)
    }

    /// ``lock(exclusive:purpose:staleAfter:refreshEvery:)`` on the repository in `store` without opening
    /// it (lock objects are plaintext).
    public static func lock(
        store: any ObjectStore, exclusive: Bool, purpose: String, staleAfter: Duration = .seconds(30 * 60), refreshEvery: Duration = .seconds(5 * 60)
    ) throws -> RepositoryLockHandle {
        let stale = staleAfter.seconds, every = refreshEvery.seconds
        guard every > 0, stale > every else {
            throw ChunkStoreError(
                .invalidArgument, "lock refresh interval \(refreshEvery) and stale time \(staleAfter): give a positive interval shorter than the stale time")
        }
        let key = "locks/" + BlobID(bytes: (0..<32).map { _ in UInt8.random(in: 0...255) })!.hex
        let info = LockInfo.current(exclusive: exclusive, purpose: purpose)
        try store.put(key, try info.encoded())
        do {
            let staleLocks = try checkOtherLocks(store: store, own: key, exclusive: exclusive, staleAfter: stale)
            if exclusive {
                for name in staleLocks { try? store.delete(name) }
            }
        } catch {
            try? store.delete(key)
            throw error
        }
        return RepositoryLockHandle(
            refresher: LockRefresher(store: store, key: key, info: info, staleAfter: stale, refreshEvery: every), exclusive: exclusive)
    }

    /// Reads every lock object but `own`; throws ``ChunkStoreErrorCode/locked`` naming the first live
    /// one that conflicts; returns the stale ones.
    private static func checkOtherLocks(store: any ObjectStore, own: String, exclusive: Bool, staleAfter: TimeInterval) throws -> [String] {
        let now = Date()
        var staleLocks: [String] = []
        var conflicts: [String] = []
        for name in try store.list(prefix: "locks/") where name != own {
            let other: LockInfo
            do {
                other = try LockInfo.decode(try store.get(name), name: name)
            } catch let e as ChunkStoreError where e.code == .objectMissing {
                continue  // released since the listing
            } catch let e as ChunkStoreError where e.code == .damaged {
                conflicts.append("\(e.message); remove \(name) from \(store.location)")
                continue
            }
            if other.isStale(now: now, staleAfter: staleAfter) {
                staleLocks.append(name)
            } else if exclusive || other.exclusive {
                conflicts.append(
                    "locked by \(other.describe(now: now)); wait for it or, if that process is gone, remove \(name) from \(store.location) "
                        + "(a lock not refreshed for \(LockInfo.span(staleAfter)) is ignored)")
            }
        }
        if let first = conflicts.first {
            let more = conflicts.count > 1 ? " (and \(conflicts.count - 1) more conflicting lock\(conflicts.count > 2 ? "s" : ""))" : ""
            throw ChunkStoreError(.locked, "cannot take \(exclusive ? "an exclusive" : "a shared") lock on \(store.location): \(first)\(more)")
        }
        return staleLocks
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: TimeInterval {
        let c = components
        return TimeInterval(c.seconds) + TimeInterval(c.attoseconds) / 1e18
    }
}
