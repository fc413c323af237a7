import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An ``ObjectStore`` in a local folder: key `a/b/c` is the file `<root>/a/b/c`.
///
/// Writes are atomic and durable: the bytes go to a temporary file beside the target (`.tmp-<random>`),
/// which is fsynced, renamed over the target, and the folder is fsynced. Temporary files are never
/// listed; one left by a crash is harmless.
public struct FolderStore: ObjectStore {
    /// The folder.
    public let root: String

    /// A store in `root`, created (with its parents) when it does not exist.
    public init(root: String) throws {
        var r = root
        while r.count > 1, r.hasSuffix("/") { r.removeLast() }
        self.root = r
        do {
            try FileManager.default.createDirectory(atPath: r, withIntermediateDirectories: true)
        } catch {
            throw ChunkStoreError(.storage, "cannot create the repository folder \(r): \(error.localizedDescription); check the path and its permissions")
        }
    }

    public var location: String { "folder \(root)" }

    private func path(_ key: String) throws -> String {
        guard !key.isEmpty, !key.hasPrefix("/"), !key.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw ChunkStoreError(.invalidArgument, "object key \"\(key)\" is not a relative path without . or .. (in \(location))")
        }
        return root + "/" + key
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        let target = try path(key)
        let dir = (target as NSString).deletingLastPathComponent
        var folder = root
        for component in dir.dropFirst(root.count).split(separator: "/") {
            folder += "/" + component
            var info = stat()
            if mkdir(folder, 0o700) != 0, errno != EEXIST || stat(folder, &info) != 0 || info.st_mode & S_IFMT != S_IFDIR {
                let reason = errno == EEXIST ? "it exists and is not a folder" : String(cString: strerror(errno))
                throw ChunkStoreError(.storage, "cannot store \(key) in \(location): cannot create the folder \(folder) (\(reason)); check the repository's folders and permissions")
            }
        }
        let temp = target + ".tmp-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw posixError("create \(temp)") }
        var ok = false
        defer {
            if !ok { unlink(temp) }
        }
        do {
            defer { close(fd) }
            try bytes.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = write(fd, raw.baseAddress! + off, raw.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw posixError("write \(temp)")
                    }
                    off += n
                }
            }
            guard fsync(fd) == 0 else { throw posixError("fsync \(temp)") }
        }
        guard rename(temp, target) == 0 else { throw posixError("rename \(temp) to \(target)") }
        ok = true
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            defer { close(dfd) }
            guard fsync(dfd) == 0 else { throw posixError("fsync folder \(dir)") }
        }
    }

    public func get(_ key: String) throws -> [UInt8] {
        try reading(key) { fd, p in
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw posixError("stat \(p)") }
            let size = Int(st.st_size)
            let out = try readAt(fd, p, from: 0, count: size)
            guard out.count == size else {
                throw ChunkStoreError(.storage, "\(p) shrank while being read (\(out.count) of \(size) bytes): is something else writing the repository?")
            }
            return out
        }
    }

    public func get(_ key: String, range: Range<Int>) throws -> [UInt8] {
        try reading(key) { fd, p in try readAt(fd, p, from: range.lowerBound, count: range.count) }
    }

    private func reading(_ key: String, _ body: (Int32, String) throws -> [UInt8]) throws -> [UInt8] {
        let p = try path(key)
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw ChunkStoreError(.objectMissing, "\(key) is missing from \(location)") }
            throw posixError("open \(p)")
        }
        defer { close(fd) }
        return try body(fd, p)
    }

    /// Up to `count` bytes from `offset` (fewer at the end of the file).
    private func readAt(_ fd: Int32, _ p: String, from offset: Int, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var off = 0
        try out.withUnsafeMutableBytes { raw in
            while off < count {
                let n = pread(fd, raw.baseAddress! + off, count - off, off_t(offset + off))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw posixError("read \(p)")
                }
                if n == 0 { break }
                off += n
            }
        }
        if off < count { out.removeLast(count - off) }
        return out
    }

    public func list(prefix: String) throws -> [String] {
        try walk(prefix: prefix) { key, _ in key }
    }

    public func listWithSizes(prefix: String) throws -> [StoredObject] {
        try walk(prefix: prefix) { key, path in
            var info = stat()
            guard stat(path, &info) == 0 else {
                if errno == ENOENT { return nil }  // removed since it was listed
                throw posixError("stat \(path)")
            }
            return StoredObject(key: key, size: Int64(info.st_size))
        }
    }

    /// The files whose keys start with `prefix`, each made into a result by `each(key, path)` (nil: skip),
    /// sorted by key. Temporary files are skipped.
    private func walk<T>(prefix: String, _ each: (String, String) throws -> T?) throws -> [T] {
        // Walk only the deepest folder the prefix names, then filter.
        let folder = prefix.contains("/") ? String(prefix[..<prefix.lastIndex(of: "/")!]) : ""
        let base = folder.isEmpty ? root : root + "/" + folder
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: base, isDirectory: &isDir), isDir.boolValue else { return [] }
        guard let walker = FileManager.default.enumerator(atPath: base) else {
            throw ChunkStoreError(.storage, "cannot list \(base) in \(location): check its permissions")
        }
        var found: [(String, String)] = []
        while let rel = walker.nextObject() as? String {
            if (walker.fileAttributes?[.type] as? FileAttributeType) == .typeDirectory { continue }
            if rel.split(separator: "/").last?.contains(".tmp-") == true { continue }
            let key = folder.isEmpty ? rel : folder + "/" + rel
            if key.hasPrefix(prefix) { found.append((key, base + "/" + rel)) }
        }
        return try found.sorted { $0.0 < $1.0 }.compactMap { try each($0.0, $0.1) }
    }

    public func delete(_ key: String) throws {
        let p = try path(key)
        if unlink(p) != 0, errno != ENOENT { throw posixError("delete \(p)") }
    }

    public func exists(_ key: String) throws -> Bool {
        FileManager.default.fileExists(atPath: try path(key))
    }

    private func posixError(_ what: String) -> ChunkStoreError {
        ChunkStoreError(.storage, "\(what) failed in \(location): \(String(cString: strerror(errno))); check free space and permissions")
    }
}
