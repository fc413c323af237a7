import CCurl
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Names the gateway keeps for itself inside a bucket folder: temp files and multipart staging.
/// Listing skips them and keys may not use them.
let reservedPrefix = ".automate-"
let uploadsFolder = ".automate-uploads"
let etagXattr = "user.automate.etag"

struct FileInfo {
    var size: Int
    var mtime: Date
    var mtimeNS: Int
    var isDir: Bool
    var isFile: Bool
}

func statPath(_ path: String) -> FileInfo? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return FileInfo(st)
}

extension FileInfo {
    init(_ st: stat) {
        size = Int(st.st_size)
        mtimeNS = Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec)
        mtime = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
        isDir = (st.st_mode & S_IFMT) == S_IFDIR
        isFile = (st.st_mode & S_IFMT) == S_IFREG
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// Writes data to a hidden temp file beside its final name; `commit` fsyncs and renames it into place,
/// `abort` removes it. A crash leaves at most a hidden `.automate-tmp-*` file that listing skips.
///
/// Data is gathered in 512 KiB buffers; each full buffer is written by a serial I/O queue while a second
/// queue computes its MD5, so receiving, hashing and writing overlap. At most 3 buffers exist per file.
final class PendingFile: @unchecked Sendable {
    let dir: String
    let tmpPath: String
    let fd: Int32
    private static let bufferSize = 512 << 10
    private static let bufferCount = 3
    private var staging: UnsafeMutableRawBufferPointer
    private var filled = 0
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var all: [UnsafeMutableRawBufferPointer] = []
    private let lock = NSLock()
    private let slots = DispatchSemaphore(value: 0)
    private let writeQueue = DispatchQueue(label: "gateway.file.write")
    private let hashQueue = DispatchQueue(label: "gateway.file.md5")
    private let group = DispatchGroup()
    private var md5 = Insecure.MD5()
    private var ioError: String?
    private(set) var written = 0
    private var flushedUpTo = 0
    private var done = false

    init(dir: String) throws {
        self.dir = dir
        var attempt = 0
        while true {
            let path = dir + "/" + reservedPrefix + "tmp-" + UUID().uuidString.lowercased()
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                self.fd = fd; self.tmpPath = path
                break
            }
            // A concurrent delete may have removed an empty parent folder: recreate it and retry.
            if errno == ENOENT && attempt < 5 {
                attempt += 1
                try makeDirs(dir)
                continue
            }
            throw S3Error("InternalError", 500, "cannot create temp file in \(dir): \(errnoText())")
        }
        staging = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 4096)
        all.append(staging)
    }

    deinit {
        group.wait()
        for b in all { b.deallocate() }
        if !done { close(fd); unlink(tmpPath) }
    }

    func write(_ p: UnsafeRawBufferPointer) throws {
        var src = p
        while src.count > 0 {
            let n = min(src.count, staging.count - filled)
            UnsafeMutableRawBufferPointer(rebasing: staging[filled..<(filled + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<n]))
            filled += n
            src = UnsafeRawBufferPointer(rebasing: src[n...])
            if filled == staging.count { try flush() }
        }
    }

    /// Hands the staging buffer to the I/O and hash queues and takes a free one (waiting if none).
    func flush() throws {
        if let e = lock.withLock({ ioError }) { throw S3Error("InternalError", 500, e) }
        guard filled > 0 else { return }
        let buf = staging, n = filled
        let chunk = UnsafeRawBufferPointer(rebasing: buf[0..<n])
        let pending = PendingCount(2)
        let release: @Sendable () -> Void = { [self] in
            if pending.decrement() {
                lock.withLock { free.append(buf) }
                slots.signal()
            }
        }
        group.enter(); group.enter()
        hashQueue.async { [self] in
            md5.update(bufferPointer: chunk)
            release(); group.leave()
        }
        writeQueue.async { [self] in
            defer { release(); group.leave() }
            guard lock.withLock({ ioError }) == nil else { return }
            var off = 0
            while off < n {
                let r = Glibc.write(fd, chunk.baseAddress! + off, n - off)
                if r < 0 {
                    if errno == EINTR { continue }
                    let e = "write failed: \(errnoText())"
                    lock.withLock { ioError = e }
                    return
                }
                off += r
            }
            written += n
            // Start writeback early so the final fsync has little left to do.
            if written - flushedUpTo >= 16 << 20 {
                _ = automate_sync_file_range_write(fd, Int64(flushedUpTo), Int64(written - flushedUpTo))
                flushedUpTo = written
            }
        }
        filled = 0
        if all.count < Self.bufferCount {
            staging = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 4096)
            all.append(staging)
        } else {
            slots.wait()
            staging = lock.withLock { free.removeLast() }
        }
    }

    /// Waits for queued writes and hashes; returns the MD5 of everything written.
    func drain() throws -> [UInt8] {
        try flush()
        group.wait()
        if let e = lock.withLock({ ioError }) { throw S3Error("InternalError", 500, e) }
        return Array(md5.finalize())
    }

    /// fsync, store the ETag, and move into place. `noClobber`: fail with PreconditionFailed if the name exists.
    func commit(to finalPath: String, etag: String, noClobber: Bool) throws {
        _ = try drain()
        guard fsync(fd) == 0 else { throw S3Error("InternalError", 500, "fsync failed: \(errnoText())") }
        var st = stat()
        fstat(fd, &st)
        let info = FileInfo(st)
        storeETag(fd: fd, etag: etag, info: info)
        close(fd)
        done = true
        if noClobber {
            if link(tmpPath, finalPath) != 0 {
                let e = errno
                unlink(tmpPath)
                if e == EEXIST { throw S3Error.preconditionFailed }
                throw S3Error("InternalError", 500, "link failed: \(String(cString: strerror(e)))")
            }
            unlink(tmpPath)
        } else if rename(tmpPath, finalPath) != 0 {
            let e = errno
            unlink(tmpPath)
            if e == EISDIR || e == ENOTEMPTY || e == EEXIST {
                throw S3Error("InvalidRequest", 409, "A folder exists with this key's name.")
            }
            throw S3Error("InternalError", 500, "rename failed: \(String(cString: strerror(e)))")
        }
        fsyncDir(dir)
    }

    func abort() {
        guard !done else { return }
        group.wait()
        done = true
        close(fd)
        unlink(tmpPath)
    }
}

/// A small atomic-ish countdown (guarded by a lock).
final class PendingCount: @unchecked Sendable {
    private var n: Int
    private let lock = NSLock()
    init(_ n: Int) { self.n = n }
    /// true when it reached zero.
    func decrement() -> Bool { lock.withLock { n -= 1; return n == 0 } }
}

func fsyncDir(_ dir: String) {
    let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if d >= 0 { fsync(d); close(d) }
}

func makeDirs(_ path: String) throws {
    if mkdir(path, 0o755) == 0 || errno == EEXIST {
        if statPath(path)?.isDir == true { return }
        throw S3Error("InvalidRequest", 409, "An object exists where a folder is needed for this key.")
    }
    if errno == ENOENT {
        let parent = (path as NSString).deletingLastPathComponent
        guard parent != path, !parent.isEmpty else { throw S3Error("InternalError", 500, "mkdir \(path): \(errnoText())") }
        try makeDirs(parent)
        if mkdir(path, 0o755) == 0 || errno == EEXIST, statPath(path)?.isDir == true { return }
    }
    if errno == ENOTDIR { throw S3Error("InvalidRequest", 409, "An object exists where a folder is needed for this key.") }
    throw S3Error("InternalError", 500, "mkdir \(path): \(errnoText())")
}

// MARK: ETags

func storeETag(fd: Int32, etag: String, info: FileInfo) {
    let v = "\(etag) \(info.size) \(info.mtimeNS)"
    _ = v.withCString { fsetxattr(fd, etagXattr, $0, strlen($0), 0) }
}

func storeETag(path: String, etag: String, info: FileInfo) {
    let v = "\(etag) \(info.size) \(info.mtimeNS)"
    _ = v.withCString { setxattr(path, etagXattr, $0, strlen($0), 0) }
}

func loadETag(path: String, info: FileInfo) -> String? {
    var buf = [CChar](repeating: 0, count: 256)
    let n = getxattr(path, etagXattr, &buf, 255)
    guard n > 0 else { return nil }
    let s = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let parts = s.split(separator: " ")
    // Stale when the file changed behind our back (a plain copy over it).
    guard parts.count == 3, Int(parts[1]) == info.size, Int(parts[2]) == info.mtimeNS else { return nil }
    return String(parts[0])
}

/// The ETag of a file: the stored one; else its MD5 (computed once for files up to 64 MiB, then stored);
/// else a stable fallback from size and mtime (for large files copied in by hand).
func etagFor(path: String, info: FileInfo, computeLimit: Int = 64 << 20) -> String {
    if let e = loadETag(path: path, info: info) { return e }
    if info.size <= computeLimit, let md5 = md5OfFile(path) {
        storeETag(path: path, etag: md5, info: info)
        return md5
    }
    let h = Insecure.MD5.hash(data: Array("\(info.size)-\(info.mtimeNS)".utf8))
    return Hex.encode(h) + "-1"
}

func md5OfFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var md5 = Insecure.MD5()
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buf.deallocate() }
    while true {
        let n = read(fd, buf.baseAddress, buf.count)
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        md5.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buf[0..<n]))
    }
    return Hex.encode(md5.finalize())
}

/// Copies a whole file into an open descriptor (copy_file_range, falling back to read/write).
func appendFile(from src: String, to fd: Int32) throws {
    let s = open(src, O_RDONLY | O_CLOEXEC)
    guard s >= 0 else { throw S3Error("InternalError", 500, "open \(src): \(errnoText())") }
    defer { close(s) }
    while true {
        let n = automate_copy_file_range(s, fd, 1 << 30)
        if n > 0 { continue }
        if n == 0 { return }
        if errno == EINTR { continue }
        break
    }
    // Fallback
    let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buf.deallocate() }
    while true {
        let n = read(s, buf.baseAddress, buf.count)
        if n < 0 { if errno == EINTR { continue }; throw S3Error("InternalError", 500, "read: \(errnoText())") }
        if n == 0 { return }
        var off = 0
        while off < n {
            let w = write(fd, buf.baseAddress! + off, n - off)
            if w < 0 { if errno == EINTR { continue }; throw S3Error("InternalError", 500, "write: \(errnoText())") }
            off += w
        }
    }
}

func removeTree(_ path: String) {
    guard let d = opendir(path) else { unlink(path); return }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        if name != "." && name != ".." { names.append(name) }
    }
    closedir(d)
    for n in names {
        let p = path + "/" + n
        if statPath(p)?.isDir == true { removeTree(p) } else { unlink(p) }
    }
    rmdir(path)
}

func listDir(_ path: String) -> [String]? {
    guard let d = opendir(path) else { return nil }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Bytewise (UTF-8) ordering, S3's key order.
func byteLess(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

// MARK: the store

public struct ObjectEntry: Sendable {
    public var key: String
    public var size: Int
    public var mtime: Date
    public var etag: String
}

public struct ListResult: Sendable {
    public var objects: [ObjectEntry] = []
    public var commonPrefixes: [String] = []
    public var truncated = false
    public var nextMarker: String?
}

/// Filesystem mode: buckets are folders, object keys are paths under them.
public final class FSStore: Sendable {
    public let root: String?
    public let mappings: [String: String]

    public init(root: String?, mappings: [String: String]) {
        self.root = root.map { Self.absolute($0) }
        self.mappings = mappings.mapValues { Self.absolute($0) }
    }

    static func absolute(_ p: String) -> String {
        var s = p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
        while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
        return s
    }

    public static func validBucketName(_ n: String) -> Bool {
        let u = Array(n.utf8)
        guard u.count >= 3, u.count <= 63 else { return false }
        for c in u where !((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c == 46 || c == 45 || c == 95) { return false }
        return u.first != 46 && u.first != 45 && u.last != 46 && u.last != 45
    }

    /// The folder of a bucket, or NoSuchBucket.
    public func bucketPath(_ name: String) throws -> String {
        if let m = mappings[name] {
            guard statPath(m)?.isDir == true else { throw S3Error.noSuchBucket }
            return m
        }
        guard let root, Self.validBucketName(name) else { throw S3Error.noSuchBucket }
        let p = root + "/" + name
        guard statPath(p)?.isDir == true else { throw S3Error.noSuchBucket }
        return p
    }

    public func listBuckets() -> [(String, Date)] {
        var out: [String: Date] = [:]
        if let root, let names = listDir(root) {
            for n in names where Self.validBucketName(n) {
                if let i = statPath(root + "/" + n), i.isDir { out[n] = i.mtime }
            }
        }
        for (n, p) in mappings { if let i = statPath(p), i.isDir { out[n] = i.mtime } }
        return out.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    public func createBucket(_ name: String) throws {
        if mappings[name] != nil || (try? bucketPath(name)) != nil { throw S3Error.bucketExists }
        guard let root else { throw S3Error("AccessDenied", 403, "This gateway has no root folder; buckets are configured with --bucket.") }
        guard Self.validBucketName(name) else { throw S3Error.invalidBucketName }
        if mkdir(root + "/" + name, 0o755) != 0 {
            if errno == EEXIST { throw S3Error.bucketExists }
            throw S3Error("InternalError", 500, "mkdir: \(errnoText())")
        }
    }

    public func deleteBucket(_ name: String) throws {
        let p = try bucketPath(name)
        if mappings[name] != nil { throw S3Error("AccessDenied", 403, "A bucket mapped with --bucket cannot be deleted through the gateway.") }
        let names = listDir(p) ?? []
        if names.contains(where: { !$0.hasPrefix(reservedPrefix) }) { throw S3Error.bucketNotEmpty }
        if let uploads = listDir(p + "/" + uploadsFolder), !uploads.isEmpty { throw S3Error.bucketNotEmpty }
        for n in names { removeTree(p + "/" + n) }
        if rmdir(p) != 0 {
            if errno == ENOTEMPTY || errno == EEXIST { throw S3Error.bucketNotEmpty }
            throw S3Error("InternalError", 500, "rmdir: \(errnoText())")
        }
    }

    /// Checks a key and returns its path under the bucket folder.
    public static func objectPath(bucket: String, key: String) throws -> String {
        guard !key.isEmpty else { throw S3Error.invalidKey }
        guard key.utf8.count <= 1024 else { throw S3Error.keyTooLong }
        guard !key.utf8.contains(0), !key.hasPrefix("/") else { throw S3Error.invalidKey }
        let segs = key.split(separator: "/", omittingEmptySubsequences: false)
        for (i, s) in segs.enumerated() {
            if s.isEmpty && i == segs.count - 1 && i > 0 { continue } // "dir/" folder marker
            if s.isEmpty || s == "." || s == ".." || s.hasPrefix(reservedPrefix) { throw S3Error.invalidKey }
            if s.utf8.count > 255 { throw S3Error.keyTooLong }
        }
        return bucket + "/" + key
    }

    /// Removes empty parent folders of a deleted key, up to (not including) the bucket folder.
    static func pruneEmptyParents(bucket: String, key: String) {
        var parts = key.split(separator: "/").map(String.init)
        parts.removeLast()
        while !parts.isEmpty {
            let p = bucket + "/" + parts.joined(separator: "/")
            if rmdir(p) != 0 { return }
            parts.removeLast()
        }
    }

    // MARK: listing

    /// Lists keys in S3 order. `marker`: keys (or common-prefix groups) at or before it are skipped.
    public func list(bucket: String, prefix: String, delimiter: String?, marker: String?, maxKeys: Int) -> ListResult {
        var res = ListResult()
        let delim = delimiter.flatMap { $0.isEmpty ? nil : $0 }
        var count = 0
        var lastGroup: String?
        var stop = false

        func group(of key: String) -> (String, Bool) {
            if let d = delim {
                let rest = key.utf8.dropFirst(prefix.utf8.count)
                if let r = String(decoding: rest, as: UTF8.self).range(of: d) {
                    let restStr = String(decoding: rest, as: UTF8.self)
                    return (prefix + String(restStr[..<r.upperBound]), true)
                }
            }
            return (key, false)
        }

        func emit(key: String, path: String, info: FileInfo) {
            let (g, isPrefix) = group(of: key)
            if let m = marker, !byteLess(m, g) { return }
            if g == lastGroup { return }
            if count >= maxKeys { res.truncated = true; stop = true; return }
            lastGroup = g
            count += 1
            if isPrefix {
                res.commonPrefixes.append(g)
            } else {
                res.objects.append(ObjectEntry(key: key, size: info.size, mtime: info.mtime, etag: etagFor(path: path, info: info)))
            }
            res.nextMarker = g
        }

        func walk(dir: String, keyPrefix: String) {
            guard !stop, let names = listDir(dir) else { return }
            var entries: [(sortKey: String, name: String, info: FileInfo)] = []
            for n in names where !n.hasPrefix(reservedPrefix) {
                guard let i = statPath(dir + "/" + n), i.isDir || i.isFile else { continue }
                entries.append((i.isDir ? n + "/" : n, n, i))
            }
            entries.sort { byteLess($0.sortKey, $1.sortKey) }
            for e in entries {
                if stop { return }
                let key = keyPrefix + e.name
                if e.info.isDir {
                    let sub = key + "/"
                    // Prune: subtree cannot match the prefix.
                    if !(sub.hasPrefix(prefix) || prefix.hasPrefix(sub)) { continue }
                    // Prune: every key in the subtree sorts before the marker.
                    if let m = marker, !m.hasPrefix(sub), byteLess(sub, m) { continue }
                    // With "/" as delimiter a folder below the prefix is one common prefix.
                    if delim == "/", sub.hasPrefix(prefix), sub.utf8.count > prefix.utf8.count {
                        let (g, _) = group(of: sub + "x")
                        if g == sub {
                            if let m = marker, !byteLess(m, g) { continue }
                            if g == lastGroup { continue }
                            if count >= maxKeys { res.truncated = true; stop = true; return }
                            lastGroup = g; count += 1
                            res.commonPrefixes.append(g); res.nextMarker = g
                            continue
                        }
                    }
                    walk(dir: dir + "/" + e.name, keyPrefix: sub)
                } else if key.hasPrefix(prefix) {
                    emit(key: key, path: dir + "/" + e.name, info: e.info)
                }
            }
        }
        if maxKeys > 0 { walk(dir: bucket, keyPrefix: "") }
        if !res.truncated { res.nextMarker = nil }
        return res
    }

    // MARK: multipart

    public static func uploadDir(bucket: String, uploadId: String) throws -> String {
        guard uploadId.utf8.count == 32, uploadId.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw S3Error.noSuchUpload
        }
        return bucket + "/" + uploadsFolder + "/" + uploadId
    }

    public static func createUpload(bucket: String, key: String) throws -> String {
        let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let dir = try uploadDir(bucket: bucket, uploadId: id)
        try makeDirs(dir)
        let fd = open(dir + "/key", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw S3Error("InternalError", 500, "cannot create upload: \(errnoText())") }
        _ = key.withCString { write(fd, $0, strlen($0)) }
        fsync(fd)
        close(fd)
        return id
    }

    /// The key an upload was created for, or NoSuchUpload.
    public static func uploadKey(bucket: String, uploadId: String) throws -> String {
        let dir = try uploadDir(bucket: bucket, uploadId: uploadId)
        guard let d = FileManager.default.contents(atPath: dir + "/key") else { throw S3Error.noSuchUpload }
        return String(decoding: d, as: UTF8.self)
    }

    static func partName(_ n: Int) -> String { String(format: "part-%05d", n) }

    public struct PartInfo: Sendable { public var number: Int; public var size: Int; public var etag: String; public var mtime: Date }

    public static func listParts(dir: String) -> [PartInfo] {
        var out: [PartInfo] = []
        for n in listDir(dir) ?? [] where n.hasPrefix("part-") {
            guard let num = Int(n.dropFirst(5)), let i = statPath(dir + "/" + n), i.isFile else { continue }
            out.append(PartInfo(number: num, size: i.size, etag: etagFor(path: dir + "/" + n, info: i, computeLimit: Int.max), mtime: i.mtime))
        }
        return out.sorted { $0.number < $1.number }
    }
}
