import Foundation

/// Checks whether something accepts connections on a Unix-domain socket.
public enum UnixSocketProbe {
    /// True when a connect(2) to `path` succeeds.
    public static func accepts(path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return UnixAddress.with(path: path) { address, length in connect(fd, address, length) == 0 } ?? false
    }
}
