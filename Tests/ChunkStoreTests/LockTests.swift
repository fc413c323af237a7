import Foundation
import Testing
@testable import ChunkStore

@Suite struct LockTests {
    /// A repository in a temp folder (removed by the caller).
    func repository(_ tag: String) throws -> (dir: String, repo: Repository) {
        let dir = makeTempDir(tag)
        return (dir, try makeRepository(dir))
    }

    /// Writes a lock object as another process would have, under a fresh key; returns the key.
    func forge(_ store: any ObjectStore, exclusive: Bool, hostname: String, pid: Int32, purpose: String, refreshedAgo: TimeInterval) throws -> String {
        let refreshed = Date().addingTimeInterval(-refreshedAgo)
        let info = LockInfo(exclusive: exclusive, hostname: hostname, pid: pid, purpose: purpose, created: refreshed, refreshed: refreshed)
        let key = "locks/" + BlobID(bytes: (0..<32).map { _ in UInt8.random(in: 0...255) })!.hex
        try store.put(key, try info.encoded())
        return key
    }

    func stored(_ store: any ObjectStore, _ key: String) throws -> LockInfo {
        try LockInfo.decode(try store.get(key), name: key)
    }

    @Test func sharedLocksCoexist() throws {
        let (dir, repo) = try repository("lock-shared")
        defer { removeTempDir(dir) }
        let a = try repo.lock(exclusive: false, purpose: "backup teams")
        let b = try repo.lock(exclusive: false, purpose: "restore compliance")
        #expect(try repo.store.list(prefix: "locks/").sorted() == [a.key, b.key].sorted())
        let info = try stored(repo.store, a.key)
        #expect(!info.exclusive && info.purpose == "backup teams" && info.pid == getpid() && info.hostname == LockInfo.currentHostname())
        #expect(info == a.info)
        try a.release()
        try b.release()
        #expect(try repo.store.list(prefix: "locks/").isEmpty)
    }

    @Test func conflictsAreRefusedNamingTheHolder() throws {
        let (dir, repo) = try repository("lock-conflict")
        defer { removeTempDir(dir) }
        let shared = try repo.lock(exclusive: false, purpose: "backup teams")
        let refused = try #require(throws: ChunkStoreError.self) { try repo.lock(exclusive: true, purpose: "prune") }
        #expect(refused.code == .locked)
        for part in ["backup teams", "pid \(getpid())", "on host \(LockInfo.currentHostname())", "refreshed", "remove \(shared.key)"] {
            #expect(refused.message.contains(part), "\(refused.message) lacks \(part)")
        }
        print("lock conflict: \(refused.message)")
        // The refused locker removed its own object.
        #expect(try repo.store.list(prefix: "locks/") == [shared.key])
        try shared.release()

        let exclusive = try repo.lock(exclusive: true, purpose: "prune")
        let sharedRefused = try #require(throws: ChunkStoreError.self) { try repo.lock(exclusive: false, purpose: "backup") }
        #expect(sharedRefused.code == .locked && sharedRefused.message.contains("prune (exclusive"))
        #expect(throws: ChunkStoreError.self) { try repo.lock(exclusive: true, purpose: "another prune") }
        #expect(try repo.store.list(prefix: "locks/") == [exclusive.key])
        try exclusive.release()
        try repo.lock(exclusive: true, purpose: "prune").release()
    }

    @Test func unreadableLockObjectBlocks() throws {
        let (dir, repo) = try repository("lock-garbage")
        defer { removeTempDir(dir) }
        try repo.store.put("locks/garbage", Array("not json".utf8))
        let error = try #require(throws: ChunkStoreError.self) { try repo.lock(exclusive: false, purpose: "backup") }
        #expect(error.code == .locked && error.message.contains("locks/garbage is not a lock object"))
    }

    @Test func staleByTime() throws {
        let (dir, repo) = try repository("lock-stale-time")
        defer { removeTempDir(dir) }
        // A live process elsewhere that stopped refreshing 10 s ago.
        let old = try forge(repo.store, exclusive: true, hostname: "elsewhere", pid: getpid(), purpose: "hung prune", refreshedAgo: 10)
        let live = try #require(throws: ChunkStoreError.self) { try repo.lock(exclusive: false, purpose: "backup") }
        #expect(live.message.contains("hung prune") && live.message.contains(" s ago"))

        let tiny = Duration.seconds(2), every = Duration.seconds(1)
        let shared = try repo.lock(exclusive: false, purpose: "backup", staleAfter: tiny, refreshEvery: every)
        #expect(try repo.store.exists(old))  // ignored, not removed, by a shared locker
        try shared.release()
        let exclusive = try repo.lock(exclusive: true, purpose: "prune", staleAfter: tiny, refreshEvery: every)
        #expect(try !repo.store.exists(old))  // removed by an exclusive one
        try exclusive.release()

        #expect(throws: ChunkStoreError.self) { try repo.lock(exclusive: true, purpose: "p", staleAfter: .seconds(1), refreshEvery: .seconds(1)) }
    }

    @Test func staleByDeadProcess() throws {
        let (dir, repo) = try repository("lock-stale-pid")
        defer { removeTempDir(dir) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        let dead = process.processIdentifier
        // The same pid on another host says nothing about that host's process: still live.
        let remote = try forge(repo.store, exclusive: false, hostname: "elsewhere", pid: dead, purpose: "remote backup", refreshedAgo: 0)
        #expect(throws: ChunkStoreError.self) { try repo.lock(exclusive: true, purpose: "prune") }
        try repo.store.delete(remote)

        let killed = try forge(repo.store, exclusive: true, hostname: LockInfo.currentHostname(), pid: dead, purpose: "killed prune", refreshedAgo: 0)
        let shared = try repo.lock(exclusive: false, purpose: "backup")
        try shared.release()
        let exclusive = try repo.lock(exclusive: true, purpose: "prune")
        #expect(try !repo.store.exists(killed))
        #expect(try repo.store.list(prefix: "locks/") == [exclusive.key])
        try exclusive.release()
    }

    @Test func releaseDeletesTheObject() throws {
        let (dir, repo) = try repository("lock-release")
        defer { removeTempDir(dir) }
        let lock = try repo.lock(exclusive: true, purpose: "prune")
        #expect(try repo.store.exists(lock.key))
        try lock.check()
        try lock.release()
        #expect(try !repo.store.exists(lock.key))
        #expect(lock.isReleased)
        try lock.release()  // again: nothing to do
        #expect(throws: ChunkStoreError.self) { try lock.check() }
        #expect(throws: ChunkStoreError.self) { try lock.refresh() }

        var dropped: RepositoryLockHandle? = try repo.lock(exclusive: false, purpose: "backup")
        let key = dropped!.key
        #expect(try repo.store.exists(key))
        dropped = nil
        #expect(try !repo.store.exists(key))
    }

    @Test func refreshRewritesTheObject() throws {
        let (dir, repo) = try repository("lock-refresh")
        defer { removeTempDir(dir) }
        let lock = try repo.lock(exclusive: false, purpose: "backup")
        let hourAgo = Date().addingTimeInterval(-3600)
        func backdate() throws {
            var info = try stored(repo.store, lock.key)
            info.refreshed = hourAgo
            try repo.store.put(lock.key, try info.encoded())
        }
        try backdate()
        try lock.refresh()
        let refreshed = try stored(repo.store, lock.key)
        #expect(refreshed.refreshed > Date().addingTimeInterval(-60))
        #expect(refreshed.created == lock.info.created && refreshed.purpose == "backup")
        #expect(lock.info == refreshed)
        try lock.release()

        // The handle's thread does it every refreshEvery.
        let busy = try repo.lock(exclusive: false, purpose: "backup", staleAfter: .seconds(60), refreshEvery: .milliseconds(20))
        defer { try? busy.release() }
        let info = busy.info
        var forged = info
        forged.refreshed = hourAgo
        try repo.store.put(busy.key, try forged.encoded())
        let count = busy.refresher.refreshCount
        #expect(busy.refresher.waitForRefreshes(count + 2, timeout: 30))
        #expect(try stored(repo.store, busy.key).refreshed > Date().addingTimeInterval(-60))
    }

    @Test func lockRemovedByAnotherProcessIsLost() throws {
        let (dir, repo) = try repository("lock-lost")
        defer { removeTempDir(dir) }
        let lock = try repo.lock(exclusive: true, purpose: "prune")
        try repo.store.delete(lock.key)  // another process judged it stale
        let error = try #require(throws: ChunkStoreError.self) { try lock.refresh() }
        #expect(error.code == .locked && error.message.contains("was removed"))
        #expect(throws: ChunkStoreError.self) { try lock.check() }
        #expect(try !repo.store.exists(lock.key))  // not written again
        let prune = try #require(throws: ChunkStoreError.self) { try repo.prune(referenced: [], lock: lock) }
        #expect(prune.code == .locked)
    }

    /// Two processes racing for exclusive locks: never both succeed.
    @Test func racingExclusiveLockersNeverBothWin() throws {
        let (dir, repo) = try repository("lock-race")
        defer { removeTempDir(dir) }
        for round in 0..<20 {
            let handles = HandleBox()
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                if let h = try? repo.lock(exclusive: true, purpose: "racer \(i)") { handles.add(h) }
            }
            #expect(handles.count <= 1, "round \(round): both won")
            handles.releaseAll()
            #expect(try repo.store.list(prefix: "locks/").isEmpty)
        }
    }
}

/// Lock handles collected from several threads.
final class HandleBox: @unchecked Sendable {
    private let lock = NSLock()
    private var handles: [RepositoryLockHandle] = []
    func add(_ h: RepositoryLockHandle) { lock.withLock { handles.append(h) } }
    var count: Int { lock.withLock { handles.count } }
    func releaseAll() { lock.withLock { for h in handles { try? h.release() } } }
}
