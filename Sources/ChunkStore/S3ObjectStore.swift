import S3Client

/// An ``ObjectStore`` in an S3 bucket (the stack's `backup-gateway`, or any S3 API): key `k` is the
/// object `<prefix>k` in `bucket`. A PUT is atomic on S3 (an object is whole or absent).
public struct S3ObjectStore: ObjectStore {
    /// The client (endpoint, region, credentials).
    public let client: S3Client
    /// The bucket.
    public let bucket: String
    /// Prepended to every key: empty, or ending in `/` (added when missing).
    public let prefix: String

    /// A store in `bucket` under `prefix`.
    public init(client: S3Client, bucket: String, prefix: String = "") {
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    public var location: String { "s3://\(bucket)/\(prefix) at \(client.endpoint)" }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        try wrap("store \(key)") { try client.putObjectSync(bucket: bucket, key: prefix + key, bytes: bytes) }
    }

    public func get(_ key: String) throws -> [UInt8] {
        try reading(key) { try client.getObjectSync(bucket: bucket, key: prefix + key) }
    }

    public func get(_ key: String, range: Range<Int>) throws -> [UInt8] {
        try reading(key) { try client.getObjectRangeSync(bucket: bucket, key: prefix + key, range: range) }
    }

    private func reading(_ key: String, _ body: () throws -> [UInt8]) throws -> [UInt8] {
        do {
            return try body()
        } catch let e as S3Error where e.status == 404 || e.code == "NoSuchKey" {
            throw ChunkStoreError(.objectMissing, "\(key) is missing from \(location)")
        } catch {
            throw ChunkStoreError(.storage, "cannot read \(key) from \(location): \(error); check the endpoint, credentials and bucket")
        }
    }

    public func list(prefix keyPrefix: String) throws -> [String] {
        try wrap("list \(keyPrefix)") {
            try client.listObjectsSync(bucket: bucket, prefix: prefix + keyPrefix).map { String($0.key.dropFirst(prefix.count)) }.sorted()
        }
    }

    public func listWithSizes(prefix keyPrefix: String) throws -> [StoredObject] {
        try wrap("list \(keyPrefix)") {
            try client.listObjectsSync(bucket: bucket, prefix: prefix + keyPrefix)
                .map { StoredObject(key: String($0.key.dropFirst(prefix.count)), size: $0.size) }
                .sorted { $0.key < $1.key }
        }
    }

    public func delete(_ key: String) throws {
        try wrap("delete \(key)") { try client.deleteObjectSync(bucket: bucket, key: prefix + key) }
    }

    public func exists(_ key: String) throws -> Bool {
        try wrap("look up \(key)") { try client.headObjectSync(bucket: bucket, key: prefix + key) != nil }
    }

    private func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw ChunkStoreError(.storage, "cannot \(what) in \(location): \(error); check the endpoint, credentials and bucket")
        }
    }
}
