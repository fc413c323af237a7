import AutomateRPC
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The folder through which a recovery's WAL files reach the database server without crossing the
/// socket: the sidecar writes each fetched (and checked) file here, and `automate-wal fetch`, running as
/// the server's user, copies it into `pg_wal` with `copy_file_range` and removes it. The folder is the
/// sidecar's data folder's `wal-handoff/`, which the manifests share with the server's user only
/// (`shared_with = ["automate-postgresql"]`: group-owned, 02770). A 16 MiB segment then costs the
/// recovery one copy in the kernel instead of several through the RPC frame (scripts/bench-pitr.sh
/// compares the whole recovery with one by hand).
///
/// The other way, `automate-wal archive` copies a finished segment into the folder (in the kernel) and
/// names the copy in `ArchiveWAL`; ``takeArchiveCopy(named:owner:)`` reads it once and removes it.
///
/// A file appears under its final name only once it is whole and checked (written under a hidden
/// temporary name, then renamed); names are unique, so two fetches of one segment never share a file.
/// Files nobody took (the recovery stopped, a fetch died) are removed by the read-ahead's expiry and at the
/// sidecar's next start.
struct WALHandoff: Sendable {
    let folder: String

    /// Makes the folder (group-shared: 0770, inheriting the data folder's setgid group) and empties it of
    /// what an earlier run left.
    init(folder: String) throws {
        self.folder = folder
        if mkdir(folder, 0o770) != 0 && errno != EEXIST {
            throw RPCError(.internal, "cannot make the WAL hand-off folder \(folder): \(String(cString: strerror(errno)))")
        }
        chmod(folder, 0o2770)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
            unlink(folder + "/" + name)
        }
    }

    /// Writes one file through `fill` (which hands its bytes to the writer it gets, and throws when they
    /// fail their check) and returns it, whole, under a unique name; on any failure nothing is left.
    func write(name: String, cluster: String, fill: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> FetchedWAL {
        let unique = "\(cluster)-\(name)-\(UInt64.random(in: 0...UInt64.max))"
        let temp = folder + "/.writing-" + unique
        let final = folder + "/" + unique
        // Group-readable: the server's user copies it; group-writable folder: it removes it.
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw RPCError(.internal, "cannot create \(temp) in the WAL hand-off folder: \(String(cString: strerror(errno)))") }
        var size = 0
        do {
            defer { close(fd) }
            try fill { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw RPCError(.internal, "cannot write \(temp) in the WAL hand-off folder: \(String(cString: strerror(errno)))")
                    }
                    offset += n
                }
                size += buffer.count
            }
            fchmod(fd, 0o640)
            guard rename(temp, final) == 0 else {
                throw RPCError(.internal, "cannot rename \(temp) to \(final): \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temp)
            throw error
        }
        return .handoff(path: final, size: size)
    }

    /// The prefix of the copies `automate-wal archive` puts here.
    static let archivePrefix = ".archive-"

    /// Reads and removes a copy `automate-wal archive` put here. The server's user may write this folder,
    /// so the sidecar reads nothing else through it: a plain name with ``archivePrefix``, opened without
    /// following a symbolic link, a regular file with one link (not a hard link to a file elsewhere),
    /// owned by `owner` (the caller's uid; nil: any owner, for trusted callers).
    func takeArchiveCopy(named name: String, owner: UInt32?) throws -> Data {
        guard name.hasPrefix(Self.archivePrefix), !name.contains("/"), name.utf8.count <= 255 else {
            throw RPCError(.invalidArgument, "handoff_name \"\(name)\" is not a copy in the WAL hand-off folder (\(Self.archivePrefix)<name>-...)")
        }
        let path = folder + "/" + name
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw RPCError(.failedPrecondition, "cannot open \(path) (the WAL file handed over): \(String(cString: strerror(errno)))")
        }
        defer {
            close(fd)
            unlink(path)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1 else {
            throw RPCError(.permissionDenied, "\(path) is not a plain file with one link: not read")
        }
        if let owner, st.st_uid != owner {
            throw RPCError(.permissionDenied, "\(path) belongs to uid \(st.st_uid), not to the caller (uid \(owner)): not read")
        }
        let size = Int(st.st_size)
        var content = Data(count: size)
        var offset = 0
        try content.withUnsafeMutableBytes { buffer in
            while offset < size {
                let n = read(fd, buffer.baseAddress! + offset, size - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw RPCError(.failedPrecondition, "\(path) ended after \(offset) of \(size) bytes (\(n < 0 ? String(cString: strerror(errno)) : "end of file"))")
                }
                offset += n
            }
        }
        return content
    }
}
