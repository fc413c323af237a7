import Foundation
import Synchronization

/// A service's own notification socket: a Unix datagram socket speaking the sd_notify protocol
/// (`WATCHDOG=1`, `READY=1`, `STATUS=...`), so a service can use libsystemd's `sd_notify` or write the
/// datagram itself. Its path is the service's `NOTIFY_SOCKET`.
///
/// Read on a thread of its own with blocking `recv` (senders are unnamed sockets, which swift-nio's
/// datagram channel does not accept).
public final class NotifySocket: Sendable {
    /// The socket's path.
    public let path: String
    private let fd: Int32
    private let closed = Mutex(false)

    /// Binds `path` (replacing a stale file), makes it writable by `user` only, and delivers each
    /// datagram's `KEY=value` lines to `onMessage`.
    public init(path: String, user: ServiceUser?, onMessage: @escaping @Sendable ([String: String]) -> Void) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SupervisorError(.filesystem, "cannot make a socket for \(path): \(String(cString: strerror(errno)))") }
        guard let rc = UnixAddress.with(path: path, { address, length in bind(fd, address, length) }) else {
            Glibc.close(fd)
            throw SupervisorError(.filesystem, "socket path too long: \(path)")
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw SupervisorError(.filesystem, "cannot bind \(path): \(reason)")
        }
        if let user, geteuid() == 0 { _ = chown(path, user.uid, user.gid) }
        chmod(path, 0o600)
        var timeout = timeval(tv_sec: 0, tv_usec: 250_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [self] in self.receive(onMessage) }
        thread.name = "automate-notify"
        thread.start()
    }

    private func receive(_ onMessage: @Sendable ([String: String]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !closed.withLock({ $0 }) {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { continue }
            var fields: [String: String] = [:]
            for line in String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            if !fields.isEmpty { onMessage(fields) }
        }
        Glibc.close(fd)
    }

    /// Stops reading and removes the socket file.
    public func close() {
        closed.withLock { $0 = true }
        unlink(path)
    }
}
