import ChunkStore
import Foundation
import Synchronization

/// A fault-injection point for the prune's crash tests: an ``ObjectStore`` that kills its own process
/// with SIGKILL (no cleanup, as `kill -9` or a power loss would) just before its `after`-th change (a put
/// or a delete; lock objects do not count). Used only when `AUTOMATE_FAULT_KILL_PRUNE_AFTER` is set.
final class KillSwitchStore: ObjectStore {
    /// The variable that arms it: the number of changes to let through.
    static let variable = "AUTOMATE_FAULT_KILL_PRUNE_AFTER"
    let inner: any ObjectStore
    let after: Int
    private let changes = Mutex(0)

    init(inner: any ObjectStore, after: Int) {
        self.inner = inner
        self.after = after
    }

    /// The store armed from the environment, or `store` itself.
    static func arm(_ store: any ObjectStore) -> any ObjectStore {
        guard let text = ProcessInfo.processInfo.environment[variable], let n = Int(text), n >= 0 else { return store }
        return KillSwitchStore(inner: store, after: n)
    }

    var location: String { inner.location }

    private func change(_ key: String) {
        guard !key.hasPrefix("locks/") else { return }
        let n = changes.withLock { count -> Int in
            count += 1
            return count
        }
        if n > after { kill(getpid(), SIGKILL) }
    }

    func put(_ key: String, _ bytes: [UInt8]) throws {
        change(key)
        try inner.put(key, bytes)
    }

    func get(_ key: String) throws -> [UInt8] { try inner.get(key) }
    func get(_ key: String, range: Range<Int>) throws -> [UInt8] { try inner.get(key, range: range) }
    func list(prefix: String) throws -> [String] { try inner.list(prefix: prefix) }
    func listWithSizes(prefix: String) throws -> [StoredObject] { try inner.listWithSizes(prefix: prefix) }

    func delete(_ key: String) throws {
        change(key)
        try inner.delete(key)
    }

    func exists(_ key: String) throws -> Bool { try inner.exists(key) }
}
