#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The server's socket file and its run directory: created with the right modes, stale files from
/// dead processes replaced, live ones refused.
enum RPCSocketFile {
    /// The longest path a `sockaddr_un` holds (without its terminating NUL).
    static var maxPathLength: Int {
        MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
    }

    /// Prepares the socket's directory:
    /// - missing: created (with missing parents, 0755) as 0700;
    /// - existing without the sticky bit: forced to 0700 (a private run directory);
    /// - existing with the sticky bit (a shared run directory, such as the supervisor's 01770 for its
    ///   service users): kept as it is, unless anyone at all may write to it, which is refused.
    static func prepareRunDirectory(forSocketAt path: String) throws {
        let directory = parentDirectory(of: path)
        var info = stat()
        if stat(directory, &info) != 0 {
            try makeDirectories(directory, mode: 0o700)
        } else {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw RPCServerError.runDirectory(path: directory, reason: "it exists and is not a directory")
            }
            if info.st_mode & S_ISVTX != 0 {
                guard info.st_mode & S_IWOTH == 0 else {
                    throw RPCServerError.runDirectory(
                        path: directory,
                        reason: "anyone may create files in it: make it 0700 (or 01770 for a service group)")
                }
                return
            }
        }
        guard chmod(directory, 0o700) == 0 else {
            throw RPCServerError.runDirectory(path: directory, reason: errnoDescription())
        }
    }

    /// Makes `path` free for binding: nothing there is fine; a socket nobody listens on is removed;
    /// a socket with a live listener, or anything that is not a socket, is refused.
    static func claim(_ path: String) throws {
        guard path.utf8.count <= maxPathLength else {
            throw RPCServerError.socketPathTooLong(path: path, maximum: maxPathLength)
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw RPCServerError.bindFailed(path: path, reason: "cannot inspect it: \(errnoDescription())")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw RPCServerError.notASocket(path: path)
        }
        switch probe(path) {
        case 0:
            throw RPCServerError.socketInUse(path: path)
        case ECONNREFUSED, ENOENT:
            guard unlink(path) == 0 || errno == ENOENT else {
                throw RPCServerError.bindFailed(path: path, reason: "cannot remove the stale socket: \(errnoDescription())")
            }
        case let error:
            throw RPCServerError.bindFailed(
                path: path, reason: "cannot tell whether the existing socket is live: \(String(cString: strerror(error)))")
        }
    }

    /// Restricts the bound socket to its owner and group (0660). The run directory decides who reaches
    /// it at all (0700, or 01770 for the supervisor's service group); the peer policy what each may call.
    static func restrict(_ path: String) throws {
        guard chmod(path, 0o660) == 0 else {
            throw RPCServerError.bindFailed(path: path, reason: "cannot set mode 0660: \(errnoDescription())")
        }
    }

    /// Where to bind before the socket appears at `path`: a hidden name in the same folder (so that a
    /// rename moves it into place), no longer than `path` allows; nil when no such name fits the
    /// length limit (then `path` is bound directly).
    static func stagingPath(for path: String) -> String? {
        let staging = parentDirectory(of: path) + "/.rpc-\(String(UInt32(getpid()), radix: 16))-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        return staging.utf8.count <= maxPathLength ? staging : nil
    }

    /// Moves a bound, listening socket from `staging` to `path` (atomic: a client finds no socket, or
    /// one that accepts).
    static func publish(_ staging: String, at path: String) throws {
        guard rename(staging, path) == 0 else {
            throw RPCServerError.bindFailed(path: path, reason: "cannot move the socket into place from \(staging): \(errnoDescription())")
        }
    }

    /// Removes the socket file if it is still a socket.
    static func remove(_ path: String) {
        var info = stat()
        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK {
            unlink(path)
        }
    }

    /// Connects to `path` and hangs up: 0 if something accepts, otherwise the errno.
    static func probe(_ path: String) -> Int32 {
        #if canImport(Darwin)
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maxPathLength else { return ENAMETOOLONG }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0 ? 0 : errno
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    private static func makeDirectories(_ directory: String, mode: mode_t) throws {
        var info = stat()
        if stat(directory, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw RPCServerError.runDirectory(path: directory, reason: "it exists and is not a directory")
            }
            return
        }
        let parent = parentDirectory(of: directory)
        if parent != directory, parent != "/", parent != "." {
            try makeDirectories(parent, mode: 0o755)
        }
        guard mkdir(directory, mode) == 0 || errno == EEXIST else {
            throw RPCServerError.runDirectory(path: directory, reason: errnoDescription())
        }
    }

    private static func errnoDescription() -> String {
        String(cString: strerror(errno))
    }
}
