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
/// recovery one copy in the kernel instead of four through the RPC frame (about 20 ms instead of 100).
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
}
