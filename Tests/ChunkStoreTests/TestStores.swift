import Foundation
@testable import ChunkStore

/// A store that stands for a process killed with -9: it lets `mutationsAllowed` puts and deletes
/// through, then fails every later one (reads keep working, as another process would see the store).
final class CrashingStore: ObjectStore, @unchecked Sendable {
    let inner: any ObjectStore
    private let lock = NSLock()
    private var remaining: Int
    private var crashed = false

    init(_ inner: any ObjectStore, mutationsAllowed: Int) {
        self.inner = inner
        remaining = mutationsAllowed
    }

    /// Whether a mutation was refused.
    var didCrash: Bool { lock.withLock { crashed } }

    var location: String { inner.location }

    func put(_ key: String, _ bytes: [UInt8]) throws {
        try spend("put \(key)")
        try inner.put(key, bytes)
    }

    func delete(_ key: String) throws {
        try spend("delete \(key)")
        try inner.delete(key)
    }

    func get(_ key: String) throws -> [UInt8] { try inner.get(key) }
    func list(prefix: String) throws -> [String] { try inner.list(prefix: prefix) }
    func listWithSizes(prefix: String) throws -> [StoredObject] { try inner.listWithSizes(prefix: prefix) }
    func exists(_ key: String) throws -> Bool { try inner.exists(key) }

    private func spend(_ what: String) throws {
        try lock.withLock {
            guard remaining > 0, !crashed else {
                crashed = true
                throw ChunkStoreError(.storage, "simulated crash before \(what)")
            }
            remaining -= 1
        }
    }
}

/// Every object of the store but the lock objects, with sizes.
func snapshot(_ store: any ObjectStore) throws -> [StoredObject] {
    try store.listWithSizes(prefix: "").filter { !$0.key.hasPrefix("locks/") }
}

/// Bytes of packs and index objects.
func packAndIndexBytes(_ store: any ObjectStore) throws -> Int64 {
    try (store.listWithSizes(prefix: "data/") + store.listWithSizes(prefix: "index/")).reduce(0) { $0 + $1.size }
}

/// Packs in `data/` that no index object names.
func unindexedPacks(_ repo: Repository) throws -> Set<PackID> {
    let named = Set(try repo.loadIndex().packIDs)
    return Set(try repo.store.list(prefix: "data/").compactMap(Pack.id(fromKey:))).subtracting(named)
}
