/// Where a repository's objects live: a flat namespace of keys (`config`, `keys/<id>`,
/// `data/<xx>/<pack id>`, `index/<id>`, `locks/<id>`) holding immutable byte strings. Everything the
/// library reads or writes goes through one.
///
/// - Important: Every method blocks (file or network I/O). Call from a thread of your own (the sidecars'
///   pipelines) or a blocking pool, never from the cooperative thread pool.
public protocol ObjectStore: Sendable {
    /// Names the store in messages: `folder /srv/repo`, `s3://bucket/prefix`.
    var location: String { get }
    /// Stores `bytes` under `key`, replacing any object there; the object is whole or absent, never partial.
    func put(_ key: String, _ bytes: [UInt8]) throws
    /// The whole object. Throws ``ChunkStoreErrorCode/objectMissing`` when there is none.
    func get(_ key: String) throws -> [UInt8]
    /// Bytes `range` of the object: fewer when the object ends first. Throws
    /// ``ChunkStoreErrorCode/objectMissing`` when there is none. ``ChunkedReader`` reads the blobs it
    /// needs with it, not whole packs.
    func get(_ key: String, range: Range<Int>) throws -> [UInt8]
    /// Every key that starts with `prefix`, sorted.
    func list(prefix: String) throws -> [String]
    /// Every object whose key starts with `prefix`, with its size, sorted by key (one listing: no object
    /// is read). ``Repository/prune(referenced:lock:repackUnusedAbove:packSize:dryRun:progress:)`` counts
    /// the bytes it frees with it.
    func listWithSizes(prefix: String) throws -> [StoredObject]
    /// Removes `key`; removing an absent key is not an error.
    func delete(_ key: String) throws
    /// Whether `key` holds an object.
    func exists(_ key: String) throws -> Bool
}

extension ObjectStore {
    /// The whole object, sliced: for stores that cannot read part of an object.
    public func get(_ key: String, range: Range<Int>) throws -> [UInt8] {
        let all = try get(key)
        guard range.lowerBound < all.count else { return [] }
        return Array(all[range.lowerBound..<min(range.upperBound, all.count)])
    }
}

/// An object's key and size, as ``ObjectStore/listWithSizes(prefix:)`` lists them.
public struct StoredObject: Sendable, Equatable {
    /// The object's key.
    public var key: String
    /// Its size in bytes.
    public var size: Int64

    public init(key: String, size: Int64) {
        self.key = key
        self.size = size
    }
}
