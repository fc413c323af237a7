import CAutomateShims
import Crypto
import Foundation
import S3Client
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
    var ino: UInt64
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
        ino = UInt64(st.st_ino)
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// The folder part of a path (everything before the last `/`), kept byte for byte (no normalisation, so it
/// stays comparable with the paths it was made from).
func parentPath(_ path: String) -> String {
    guard let i = path.lastIndex(of: "/") else { return "." }
    return i == path.startIndex ? "/" : String(path[..<i])
}

/// The last component of a path (after the last `/`).
func lastComponent(_ path: String) -> String {
    guard let i = path.lastIndex(of: "/") else { return path }
    return String(path[path.index(after: i)...])
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
        let parent = parentPath(path)
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

/// Copies `length` bytes at `offset` of a file to an open descriptor, at its current position
/// (copy_file_range, falling back to read/write). Throws when the source ends first.
func appendFile(from src: String, offset: Int, length: Int, to fd: Int32) throws {
    let s = open(src, O_RDONLY | O_CLOEXEC)
    guard s >= 0 else { throw S3Error("InternalError", 500, "open \(src): \(errnoText())") }
    defer { close(s) }
    guard lseek(s, off_t(offset), SEEK_SET) == off_t(offset) else { throw S3Error("InternalError", 500, "seek \(src): \(errnoText())") }
    guard automate_copy_fd(s, fd, length) == 0 else {
        if errno == ENODATA { throw S3Error("InternalError", 500, "\(src) ended before \(length) bytes at \(offset)") }
        throw S3Error("InternalError", 500, "copy from \(src): \(errnoText())")
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
    let metadata: MetadataStore
    /// Which multipart part uploads are written into their upload's assembly file.
    let assemblies = AssemblyRegistry()

    public init(root: String?, mappings: [String: String], metadataStorage: MetadataStorage = .automatic) {
        self.root = root.map { Self.absolute($0) }
        self.mappings = mappings.mapValues { Self.absolute($0) }
        self.metadata = MetadataStore(storage: metadataStorage)
    }

    static func absolute(_ p: String) -> String {
        var s = p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
        while s.contains("//") { s = s.replacingOccurrences(of: "//", with: "/") }
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

    /// Checks that a key names a path inside its bucket folder: no empty, `.` or `..` segments, no reserved
    /// `.automate-` names, S3's length limits. Throws `InvalidKey` / `KeyTooLong`.
    public static func validateKey(_ key: String) throws {
        guard !key.isEmpty else { throw S3Error.invalidKey }
        guard key.utf8.count <= 1024 else { throw S3Error.keyTooLong }
        guard !key.utf8.contains(0), !key.hasPrefix("/") else { throw S3Error.invalidKey }
        let segs = key.split(separator: "/", omittingEmptySubsequences: false)
        for (i, s) in segs.enumerated() {
            if s.isEmpty && i == segs.count - 1 && i > 0 { continue } // "dir/" folder marker
            if s.isEmpty || s == "." || s == ".." || s.hasPrefix(reservedPrefix) { throw S3Error.invalidKey }
            if s.utf8.count > 255 { throw S3Error.keyTooLong }
        }
    }

    /// After a delete in folder `dir`: removes the folders it leaves empty (S3 has no folders) and turns a
    /// folder left holding only its own object back into a plain file, up to (not including) the bucket folder.
    static func pruneFolders(bucket: String, from dir: String) {
        var d = dir
        while d.count > bucket.count && d.hasPrefix(bucket + "/") {
            // Under the folder's lock: a move of the folder's own object into or out of it (which empties the
            // folder for a moment) holds the same lock, so the folder is never removed in the middle of one.
            let removed = CommitLock.withLock(d) { () -> Bool in
                rmdir(d + "/" + MetadataStore.sideFolder)
                return rmdir(d) == 0
            }
            if !removed {
                // Other keys remain. Only a folder with its own object can need a move out, and only that
                // check lists the folder (so deleting n keys of one folder stays O(n), not O(n²)).
                if statPath(d + "/" + KeyLayout.selfObject)?.isFile == true { KeyLayout.moveOutOfFolder(d) }
                return
            }
            d = parentPath(d)
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
            guard !stop, var names = listDir(dir) else { return }
            let moving = names.filter { $0.hasPrefix(KeyLayout.movingPrefix) }
            if !moving.isEmpty {
                for m in moving { KeyLayout.recoverMove(dir + "/" + m.dropFirst(KeyLayout.movingPrefix.count)) }
                names = listDir(dir) ?? []
            }
            // Keys in this folder with their sort keys: a folder sorts as "name/" (its keys' common start), its
            // own object (`name/.automate-object`) as "name", this folder's marker (`.automate-folder`) first.
            var entries: [(key: String, path: String, info: FileInfo)] = []
            if !keyPrefix.isEmpty, names.contains(KeyLayout.folderMarker), let i = statPath(dir + "/" + KeyLayout.folderMarker), i.isFile {
                entries.append((keyPrefix, dir + "/" + KeyLayout.folderMarker, i))
            }
            for n in names where !n.hasPrefix(reservedPrefix) {
                let p = dir + "/" + n
                guard let i = statPath(p), i.isDir || i.isFile else { continue }
                if i.isDir {
                    entries.append((keyPrefix + n + "/", p, i))
                    if let s = statPath(p + "/" + KeyLayout.selfObject), s.isFile { entries.append((keyPrefix + n, p + "/" + KeyLayout.selfObject, s)) }
                } else {
                    entries.append((keyPrefix + n, p, i))
                }
            }
            entries.sort { byteLess($0.key, $1.key) }
            for e in entries {
                if stop { return }
                if e.info.isDir {
                    let sub = e.key
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
                    walk(dir: e.path, keyPrefix: sub)
                } else if e.key.hasPrefix(prefix) {
                    emit(key: e.key, path: e.path, info: e.info)
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

    static func createUpload(bucket: String, key: String, meta: ObjectMetadata) throws -> String {
        let id = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let dir = try uploadDir(bucket: bucket, uploadId: id)
        try makeDirs(dir)
        if !meta.isEmpty {
            // Written before `key`, which is what makes the upload exist.
            guard FileManager.default.createFile(atPath: dir + "/meta", contents: Data(meta.encoded())) else {
                throw S3Error("InternalError", 500, "cannot create upload: writing \(dir)/meta failed")
            }
        }
        let fd = open(dir + "/key", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw S3Error("InternalError", 500, "cannot create upload: \(errnoText())") }
        _ = key.withCString { write(fd, $0, strlen($0)) }
        fsync(fd)
        close(fd)
        return id
    }

    /// The staging folder of an upload created for `key`, or NoSuchUpload.
    static func uploadDir(bucket: String, key: String, uploadId: String) throws -> String {
        let dir = try uploadDir(bucket: bucket, uploadId: uploadId)
        guard try uploadKey(bucket: bucket, uploadId: uploadId) == key else { throw S3Error.noSuchUpload }
        return dir
    }

    /// The key an upload was created for, or NoSuchUpload.
    public static func uploadKey(bucket: String, uploadId: String) throws -> String {
        let dir = try uploadDir(bucket: bucket, uploadId: uploadId)
        guard let d = FileManager.default.contents(atPath: dir + "/key") else { throw S3Error.noSuchUpload }
        return String(decoding: d, as: UTF8.self)
    }

    /// The metadata given at CreateMultipartUpload (empty when none was).
    static func uploadMetadata(dir: String) -> ObjectMetadata {
        FileManager.default.contents(atPath: dir + "/meta").flatMap { ObjectMetadata.decode(Array($0)) } ?? ObjectMetadata()
    }

    /// The name of a part staged by earlier gateways (a data file, ETag in an xattr); see `PartRecord`.
    static func partName(_ n: Int) -> String { String(format: "part-%05d", n) }

    /// A committed part: its number, size, ETag, when it was committed, and where its bytes are (`path`,
    /// from `offset`).
    public struct PartInfo: Sendable {
        public var number: Int
        public var size: Int
        public var etag: String
        public var mtime: Date
        public var path: String
        public var offset: Int
    }

    /// The committed parts of the upload in `dir`, by number: each part's record (`rec-NNNNN`), else its
    /// legacy staged file (`part-NNNNN`).
    public static func listParts(dir: String) -> [PartInfo] {
        var byNumber: [Int: PartInfo] = [:]
        let names = listDir(dir) ?? []
        for n in names where n.hasPrefix("rec-") {
            guard let num = Int(n.dropFirst(4)), let i = statPath(dir + "/" + n), i.isFile,
                  let d = FileManager.default.contents(atPath: dir + "/" + n),
                  let r = PartRecord(text: String(decoding: d, as: UTF8.self)) else { continue }
            byNumber[num] = PartInfo(number: num, size: r.length, etag: r.etag, mtime: i.mtime, path: dir + "/" + r.file, offset: r.offset)
        }
        for n in names where n.hasPrefix("part-") {
            guard let num = Int(n.dropFirst(5)), byNumber[num] == nil, let i = statPath(dir + "/" + n), i.isFile else { continue }
            byNumber[num] = PartInfo(number: num, size: i.size, etag: etagFor(path: dir + "/" + n, info: i, computeLimit: Int.max),
                                     mtime: i.mtime, path: dir + "/" + n, offset: 0)
        }
        return byNumber.values.sorted { $0.number < $1.number }
    }
}
