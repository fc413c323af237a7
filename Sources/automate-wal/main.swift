// automate-wal: the stack's PostgreSQL hands each finished WAL file to the pg-sidecar with it, and gets
// archived ones back during a recovery. The server runs it (services/automate-postgresql.toml):
//
//   automate-wal archive [--socket PATH] [--handoff FOLDER] <path> <name>    archive_command = '... archive %p %f'
//   automate-wal fetch   [--socket PATH] [--cluster ID] <name> <path>    restore_command = '... fetch %f %p'
//   automate-wal base-backup [--socket PATH] <backup-id> <service>   a base backup's tar, on stdout
//
// base-backup is the cluster server's init hook's, for a point-in-time recovery: it pipes the tar into
// `tar -x` in an empty data folder (exit 0 once every byte was written and checked, 1 otherwise).
//
// The pg-sidecar's hand-off folder (`wal-handoff/` in its data folder, which the manifests share with the
// server's user) spares a 16 MiB segment the trip through the socket: fetch takes the file the sidecar
// wrote there, and archive (given --handoff FOLDER) puts a copy there for the sidecar to read; each with
// one copy in the kernel (copy_file_range). Without it, or when it cannot be used, the bytes go through
// the socket.
//
// The socket defaults to $AUTOMATE_RUN_DIR/pg-sidecar-service.sock; --cluster names the archive to read
// (a base backup's cluster: its system identifier), by default the running server's. Exit status, as PostgreSQL reads it:
//   0    archived (durable in the repository), or fetched (checked against its record) into <path>
//   1    archive: not archived (the sidecar or repository is down, ...): PostgreSQL keeps the file and
//        retries; fetch: the file is not in the archive (the end of the archive, to a recovery)
//   126  fetch: anything else (the sidecar or repository unreachable, a damaged file): PostgreSQL stops
//        the recovery instead of ending it early at the wrong point
//   2    a wrong command line
import AutomateRPC
import CAutomateShims
import Foundation
import PGSidecarProto
#if canImport(Glibc)
import Glibc
#endif

func say(_ message: String) {
    FileHandle.standardError.write(Data("automate-wal: \(message)\n".utf8))
}

var arguments = Array(CommandLine.arguments.dropFirst())
/// The value of `--option VALUE`, removed from `arguments`.
func option(_ name: String, in arguments: inout [String]) -> String? {
    guard let i = arguments.firstIndex(of: name) else { return nil }
    guard i + 1 < arguments.count else {
        say("\(name) needs a value")
        exit(2)
    }
    defer { arguments.removeSubrange(i...(i + 1)) }
    return arguments[i + 1]
}
let socket = option("--socket", in: &arguments) ?? ProcessInfo.processInfo.environment["AUTOMATE_RUN_DIR"].map { $0 + "/pg-sidecar-service.sock" }
let cluster = option("--cluster", in: &arguments) ?? ""
let handoffFolder = option("--handoff", in: &arguments)
guard arguments.count == 3, ["archive", "fetch", "base-backup"].contains(arguments[0]) else {
    say("usage: automate-wal archive [--socket PATH] [--handoff FOLDER] <path> <name> | fetch [--socket PATH] [--cluster ID] <name> <path> | base-backup [--socket PATH] <backup-id> <service>")
    exit(2)
}
guard let socket else {
    say("no socket: pass --socket PATH (the pg-sidecar's) or set AUTOMATE_RUN_DIR")
    exit(2)
}
let fetching = arguments[0] == "fetch"

if arguments[0] == "base-backup" {
    let (backupID, service) = (arguments[1], arguments[2])
    do {
        let client = try await RPCClient.connect(socketPath: socket)
        defer { Task { await client.close() } }
        var request = Automate_Sidecar_Pg_PGReadBaseBackupRequest()
        request.backupID = backupID
        request.service = service
        let out = FileHandle.standardOutput
        var total = 0
        for try await piece in client.stream(PGSidecarService.readBaseBackup, request, timeout: .seconds(24 * 3600)) {
            try out.write(contentsOf: piece.data)
            total += piece.data.count
        }
        say("base backup of \(service) in \(backupID): \(total) bytes of tar written")
        exit(0)
    } catch {
        say("base-backup \(backupID) \(service) through \(socket): \(error)")
        exit(1)
    }
}

/// Writes `bytes` to `path` whole: a temporary file beside it, renamed over it, so PostgreSQL never reads
/// half a file. Not fsynced: a restored file is a copy of what the archive keeps, which a recovery
/// interrupted by a crash fetches again (PostgreSQL's own example restore_command is a plain `cp`).
func writeWhole(_ bytes: Data, to path: String) throws {
    let temp = path + ".automate-wal-\(getpid())"
    guard FileManager.default.createFile(atPath: temp, contents: nil, attributes: [.posixPermissions: 0o600]),
          let handle = FileHandle(forWritingAtPath: temp) else {
        throw RPCError(.internal, "cannot create \(temp): \(String(cString: strerror(errno)))")
    }
    do {
        try handle.write(contentsOf: bytes)
        try handle.close()
        guard rename(temp, path) == 0 else { throw RPCError(.internal, "cannot rename \(temp) to \(path): \(String(cString: strerror(errno)))") }
    } catch {
        unlink(temp)
        throw error
    }
}

/// Copies `size` bytes of the open file `input` into a new file `destination` (mode `mode`, whatever the
/// umask), in the kernel (copy_file_range). Returns why it failed, or nil; a failed copy leaves no file.
func copyFile(_ input: Int32, size: Int, to destination: String, mode: mode_t, describe source: String) -> String? {
    let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard output >= 0 else { return "cannot create \(destination): \(String(cString: strerror(errno)))" }
    var failure: String?
    if automate_copy_fd(input, output, size) != 0 {
        failure = errno == ENODATA ? "\(source) holds fewer than \(size) bytes" : "copying \(source) to \(destination): \(String(cString: strerror(errno)))"
    }
    if fchmod(output, mode) != 0 && failure == nil { failure = "chmod \(destination): \(String(cString: strerror(errno)))" }
    if close(output) != 0 && failure == nil { failure = "writing \(destination): \(String(cString: strerror(errno)))" }
    if failure != nil { unlink(destination) }
    return failure
}

/// Copies the file to archive into the pg-sidecar's hand-off folder as `.archive-<name>-<pid>`, readable
/// by the folder's group; nil (and a message) when that fails, and the bytes then go through the socket.
func placeCopy(of path: String, name: String, in folder: String) -> String? {
    let copy = folder + "/.archive-\(name)-\(getpid())"
    let input = open(path, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { return nil }  // reading it through the socket path reports why
    defer { close(input) }
    var info = stat()
    let failure = fstat(input, &info) != 0
        ? "cannot stat \(path): \(String(cString: strerror(errno)))"
        : copyFile(input, size: Int(info.st_size), to: copy, mode: 0o640, describe: path)
    if let failure {
        say("cannot hand \(name) over through \(folder) (\(failure)): sending it through the socket")
        return nil
    }
    return copy
}

/// Takes a file the pg-sidecar put in its hand-off folder: copies it into a temporary file beside `path`,
/// renamed over it once whole, and removes it from the folder.
func takeHandoff(_ source: String, size: Int64, to path: String) throws {
    defer { unlink(source) }
    let input = open(source, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { throw RPCError(.internal, "cannot open \(source) (the pg-sidecar's hand-off file): \(String(cString: strerror(errno)))") }
    defer { close(input) }
    let temp = path + ".automate-wal-\(getpid())"
    unlink(temp)  // left by an earlier attempt of this pid
    var failure = copyFile(input, size: Int(size), to: temp, mode: 0o600, describe: source)
    if failure == nil && rename(temp, path) != 0 {
        failure = "cannot rename \(temp) to \(path): \(String(cString: strerror(errno)))"
        unlink(temp)
    }
    if let failure { throw RPCError(.internal, failure) }
}

/// The whole file to archive, for the socket; exits 1 (PostgreSQL keeps the file and retries) when it
/// cannot be read.
func contentToArchive(_ path: String, name: String) -> Data {
    guard let content = FileManager.default.contents(atPath: path) else {
        say("cannot read \(path) (to archive \(name)): \(String(cString: strerror(errno)))")
        exit(1)
    }
    return content
}

// Archiving is background work for the server: under load its reading and sending of 16 MiB yields the CPU
// to the transactions (nice 10, as the pg-sidecar's archiving threads). A recovery's fetch does not.
if !fetching { _ = nice(10) }

do {
    // One call, then exit: a blocking connection, without the event loop threads RPCClient starts.
    let client = try RPCBlockingClient(socketPath: socket, maxFrameSize: (64 << 20) + (64 << 10))
    if fetching {
        let (name, path) = (arguments[1], arguments[2])
        var request = Automate_Sidecar_Pg_PGFetchWALRequest()
        request.name = name
        request.cluster = cluster
        request.acceptHandoff = true
        let response = try client.call(PGSidecarService.fetchWAL, request, timeout: .seconds(600))
        if response.handoffPath.isEmpty {
            try writeWhole(response.content, to: path)
        } else {
            try takeHandoff(response.handoffPath, size: response.size, to: path)
        }
    } else {
        let (path, name) = (arguments[1], arguments[2])
        var request = Automate_Sidecar_Pg_PGArchiveWALRequest()
        request.name = name
        let copy = handoffFolder.flatMap { placeCopy(of: path, name: name, in: $0) }
        if let copy {
            request.handoffName = String(copy.split(separator: "/").last!)
        } else {
            request.content = contentToArchive(path, name: name)
        }
        // The sidecar removes the copy once read; this covers a call that never reached it.
        defer { if let copy { unlink(copy) } }
        // When PostgreSQL finished writing it: a point-in-time recovery to a later moment needs a later file.
        var info = stat()
        if stat(path, &info) == 0 {
            request.writtenUnixMs = Int64(info.st_mtim.tv_sec) * 1000 + Int64(info.st_mtim.tv_nsec) / 1_000_000
        }
        var response: Automate_Sidecar_Pg_PGArchiveWALResponse
        do {
            response = try client.call(PGSidecarService.archiveWAL, request, timeout: .seconds(600))
        } catch let e as RPCError where copy != nil && [.failedPrecondition, .permissionDenied, .invalidArgument].contains(e.code) {
            // The sidecar could not take the copy (no hand-off folder of its own, ...): the bytes, then.
            say("the pg-sidecar did not take \(name) from the hand-off folder (\(e.message)): sending it through the socket")
            request.handoffName = ""
            request.content = contentToArchive(path, name: name)
            response = try client.call(PGSidecarService.archiveWAL, request, timeout: .seconds(600))
        }
        if response.alreadyArchived { say("\(name) was archived before with the same bytes") }
    }
    exit(0)
} catch let e as RPCError where fetching && e.code == .notFound {
    exit(1)  // not archived: the end of the archive
} catch {
    say("\(arguments[0]) \(fetching ? arguments[1] : arguments[2]) through \(socket): \(error)")
    exit(fetching ? 126 : 1)
}
