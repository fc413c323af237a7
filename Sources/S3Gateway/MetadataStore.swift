import CAutomateShims
import Foundation
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Where filesystem mode keeps object metadata.
public enum MetadataStorage: Sendable {
    /// Extended attributes (`user.automate.meta`) where the file system has them, else the side folder.
    case automatic
    /// Always the hidden side folder `.automate-meta/` beside the objects (tests, file systems with broken xattrs).
    case sideFolder
}

/// Keeps `ObjectMetadata` beside an object without changing what `ls` shows of the repository.
///
/// - Extended attribute `user.automate.meta` on the file itself, set on the temp file before it is renamed
///   into place, so object and metadata appear together (a crash leaves the old pair or the new pair).
/// - Where the file system refuses user xattrs: a hidden side folder `.automate-meta/` in the object's folder
///   holding one small JSON file per object name. Entries are keyed by the object's inode, and the side file
///   is replaced (temp file + rename) before the object is renamed, keeping the entry of the object still in
///   place: until the object's rename, readers find the old object's entry; after it, the new one's.
///
/// Either way a record also holds the object's size and mtime: a file rewritten by hand (`cp` over it keeps
/// the inode and its xattrs) no longer matches and reads back without metadata, like any hand-written file.
struct MetadataStore: Sendable {
    static let xattrName = "user.automate.meta"
    static let sideFolder = ".automate-meta"
    let storage: MetadataStorage

    struct Record: Codable {
        var size: Int
        var mtime: Int
        var meta: ObjectMetadata
    }

    /// How a pending file's metadata went: already attached as an xattr, or to be written to the side folder
    /// (under the commit lock, just before the rename).
    enum Attachment {
        case notNeeded
        case attached
        case sideFile(ino: UInt64, record: Record)
    }

    /// Attaches metadata to a fully written temp file (descriptor `fd`) that will become `finalPath`.
    func attach(_ meta: ObjectMetadata, fd: Int32, info: FileInfo) throws -> Attachment {
        guard !meta.isEmpty else { return .notNeeded }
        let record = Record(size: info.size, mtime: info.mtimeNS, meta: meta)
        let bytes = (try? JSONEncoder().encode(record)).map(Array.init) ?? []
        if storage == .automatic {
            let r = bytes.withUnsafeBytes { fsetxattr(fd, Self.xattrName, $0.baseAddress, $0.count, 0) }
            if r == 0 { return .attached }
            // No user xattrs here (ENOTSUP, EPERM), or none this large (E2BIG, ENOSPC, ERANGE: a record past the
            // file system's xattr room, e.g. long headers or many part sizes): the side file holds it instead.
            let e = errno
            guard [ENOTSUP, EOPNOTSUPP, EPERM, E2BIG, ENOSPC, ERANGE].contains(e) else {
                throw S3Error("InternalError", 500, "cannot store metadata (setxattr \(Self.xattrName)): \(errnoText())")
            }
        }
        return .sideFile(ino: info.ino, record: record)
    }

    /// Writes the side-folder entry of a pending object (call under the commit lock, before the rename).
    func writeSideFile(ino: UInt64, record: Record, finalPath: String) throws {
        let (dir, side) = Self.sidePath(finalPath)
        try makeDirs(dir)
        var entries = Self.readSideFile(side)
        // Keep only the entry of the object currently in place (readers need it until the rename) and add ours.
        let current = statPath(finalPath).map { String($0.ino) }
        entries = entries.filter { $0.key == current }
        entries[String(ino)] = record
        let data = (try? JSONEncoder().encode(entries)) ?? Data()
        let tmp = dir + "/" + reservedPrefix + "tmp-" + UUID().uuidString.lowercased()
        var fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        // A delete of the folder's last other object may remove the (then empty) side folder meanwhile.
        for _ in 0..<5 where fd < 0 && errno == ENOENT {
            try makeDirs(dir)
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
        guard fd >= 0 else { throw S3Error("InternalError", 500, "cannot create \(tmp): \(errnoText())") }
        let ok = data.withUnsafeBytes { p in Glibc.write(fd, p.baseAddress, p.count) == p.count } && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, side) == 0 else {
            let e = errnoText()
            unlink(tmp)
            throw S3Error("InternalError", 500, "cannot write metadata file \(side): \(e)")
        }
        fsyncDir(dir)
    }

    /// The metadata of an object file (empty when it has none, e.g. a file copied in by hand).
    func load(path: String, info: FileInfo) -> ObjectMetadata {
        if storage == .automatic, let bytes = Self.readXattr(path), let r = try? JSONDecoder().decode(Record.self, from: Data(bytes)) {
            if r.size == info.size && r.mtime == info.mtimeNS { return r.meta }
            return ObjectMetadata()
        }
        let (_, side) = Self.sidePath(path)
        if let r = Self.readSideFile(side)[String(info.ino)], r.size == info.size, r.mtime == info.mtimeNS { return r.meta }
        return ObjectMetadata()
    }

    /// Removes the side-folder entry of a deleted object (and the side folder once empty).
    func removeSideFile(objectPath: String) {
        let (dir, side) = Self.sidePath(objectPath)
        if unlink(side) == 0 { rmdir(dir) }
    }

    static func sidePath(_ objectPath: String) -> (dir: String, file: String) {
        let parent = parentPath(objectPath)
        let dir = parent + "/" + sideFolder
        return (dir, dir + "/" + lastComponent(objectPath))
    }

    static func readSideFile(_ path: String) -> [String: Record] {
        guard let d = FileManager.default.contents(atPath: path) else { return [:] }
        return (try? JSONDecoder().decode([String: Record].self, from: d)) ?? [:]
    }

    static func readXattr(_ path: String) -> [UInt8]? {
        let n = getxattr(path, xattrName, nil, 0)
        guard n > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: n)
        let r = buf.withUnsafeMutableBytes { getxattr(path, xattrName, $0.baseAddress, n) }
        return r == n ? buf : nil
    }
}

/// Serialises the last step of writes to one path inside this process (condition check, side-folder
/// metadata, rename), so `If-Match` and the side file see a stable object. 64 stripes by path hash.
enum CommitLock {
    private static let stripes = (0..<64).map { _ in NSLock() }

    static func withLock<T>(_ path: String, _ body: () throws -> T) rethrows -> T {
        var h: UInt64 = 1469598103934665603
        for b in path.utf8 { h = (h ^ UInt64(b)) &* 1099511628211 }
        let lock = stripes[Int(h % UInt64(stripes.count))]
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}

/// The conditions a write carries (`If-None-Match: *`, `If-Match`), checked against the object in place
/// at the moment of the rename.
struct WriteCondition: Sendable {
    var ifNoneMatchAll = false
    var ifMatch: String?

    init(headers h: [String: String]) {
        ifNoneMatchAll = h["if-none-match"]?.trimmingCharacters(in: .whitespaces) == "*"
        ifMatch = h["if-match"]
    }

    init() {}

    /// 412 PreconditionFailed when the object exists for `*` or its ETag differs; 404 NoSuchKey for If-Match
    /// on a missing object.
    func check(path: String) throws {
        if ifNoneMatchAll, statPath(path)?.isFile == true { throw S3Error.preconditionFailed }
        if let im = ifMatch {
            guard let info = statPath(path), info.isFile else { throw S3Error.noSuchKey }
            guard FSBackend.etagMatches(im, etagFor(path: path, info: info)) else { throw S3Error.preconditionFailed }
        }
    }
}
