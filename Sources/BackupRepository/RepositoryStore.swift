import Crypto
import Foundation
import S3Client

/// Where a repository's files are read from: a folder on disk, or a bucket and prefix in S3. Paths are
/// relative to the repository (`<id>/<service>/metadata.json`).
public protocol RepositoryStore: Sendable {
    /// The repository as a user would name it (a folder, or `s3://bucket/prefix`).
    var location: String { get }
    /// Names directly under the repository (backup ids and other folders).
    func topLevelNames() throws -> [String]
    /// Every regular file under `prefix` (a folder path ending in `/`), with its size.
    func files(under prefix: String) throws -> [(path: String, size: UInt64)]
    /// A file's bytes; nil when it does not exist.
    func read(_ path: String) throws -> Data?
    /// A file's size; nil when it does not exist.
    func size(_ path: String) throws -> UInt64?
    /// A file's sha256 (lower-case hex), read in pieces; nil when it does not exist.
    func sha256(_ path: String) throws -> String?
}

/// A repository folder on disk.
public struct FolderStore: RepositoryStore {
    public let path: String
    public var location: String { path }

    public init(path: String) {
        self.path = (path as NSString).standardizingPath
    }

    public func topLevelNames() throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw BackupRepository.Failure(kind: .notFound, message: "no backup repository at \(path)")
        }
        do {
            return try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw BackupRepository.Failure(kind: .unreadable, message: "cannot read \(path): \(error.localizedDescription)")
        }
    }

    public func files(under prefix: String) throws -> [(path: String, size: UInt64)] {
        let folder = path + "/" + prefix
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return [] }
        var out: [(String, UInt64)] = []
        while let relative = walker.nextObject() as? String {
            var info = stat()
            if lstat(folder + relative, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
                out.append((prefix + relative, UInt64(info.st_size)))
            }
        }
        return out
    }

    public func read(_ relative: String) throws -> Data? {
        let full = path + "/" + relative
        guard FileManager.default.fileExists(atPath: full) else { return nil }
        return try Data(contentsOf: URL(fileURLWithPath: full))
    }

    public func size(_ relative: String) throws -> UInt64? {
        var info = stat()
        guard stat(path + "/" + relative, &info) == 0 else { return nil }
        return UInt64(info.st_size)
    }

    public func sha256(_ relative: String) throws -> String? {
        let full = path + "/" + relative
        guard FileManager.default.fileExists(atPath: full) else { return nil }
        return try BackupRepository.sha256(ofFile: full)
    }
}

/// A repository kept in S3 (what the gateway's S3 mode writes): `s3://bucket/prefix`, read with the real
/// endpoint and credentials.
public struct S3Store: RepositoryStore {
    public let client: S3Client
    public let bucket: String
    /// Empty, or ending in `/`.
    public let prefix: String
    public var location: String { "s3://\(bucket)/\(prefix)" }

    public init(client: S3Client, bucket: String, prefix: String) {
        self.client = client
        self.bucket = bucket
        var p = prefix
        while p.hasPrefix("/") { p.removeFirst() }
        if !p.isEmpty && !p.hasSuffix("/") { p += "/" }
        self.prefix = p
    }

    /// Parses `s3://bucket[/prefix]`.
    public static func parse(_ url: String) -> (bucket: String, prefix: String)? {
        guard url.hasPrefix("s3://") else { return nil }
        let rest = url.dropFirst(5)
        let bucket = String(rest.prefix { $0 != "/" })
        guard !bucket.isEmpty else { return nil }
        return (bucket, String(rest.dropFirst(bucket.count)))
    }

    private func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as S3Error {
            throw BackupRepository.Failure(kind: e.isNotFound ? .notFound : .unreadable, message: "\(location): \(e)")
        } catch {
            throw BackupRepository.Failure(kind: .unreadable, message: "\(location): \(error)")
        }
    }

    public func topLevelNames() throws -> [String] {
        let objects = try wrap { try client.listObjectsSync(bucket: bucket, prefix: prefix) }
        return Array(Set(objects.compactMap { o -> String? in
            let rest = o.key.dropFirst(prefix.count)
            guard let slash = rest.firstIndex(of: "/") else { return nil }
            return String(rest[..<slash])
        }))
    }

    public func files(under sub: String) throws -> [(path: String, size: UInt64)] {
        try wrap { try client.listObjectsSync(bucket: bucket, prefix: prefix + sub) }.map {
            (String($0.key.dropFirst(prefix.count)), UInt64(max(0, $0.size)))
        }
    }

    public func read(_ path: String) throws -> Data? {
        do { return Data(try client.getObjectSync(bucket: bucket, key: prefix + path)) } catch let e as S3Error where e.isNotFound {
            return nil
        } catch let e as BackupRepository.Failure { throw e } catch {
            throw BackupRepository.Failure(kind: .unreadable, message: "\(location)\(path): \(error)")
        }
    }

    public func size(_ path: String) throws -> UInt64? {
        try wrap { try client.headObjectSync(bucket: bucket, key: prefix + path) }.map { UInt64(max(0, $0.size)) }
    }

    public func sha256(_ path: String) throws -> String? {
        var hasher = SHA256()
        do {
            _ = try client.getObjectSync(bucket: bucket, key: prefix + path) { hasher.update(bufferPointer: $0) }
        } catch let e as S3Error where e.isNotFound {
            return nil
        } catch {
            throw BackupRepository.Failure(kind: .unreadable, message: "\(location)\(path): \(error)")
        }
        return Checksum.hex(hasher.finalize())
    }
}
