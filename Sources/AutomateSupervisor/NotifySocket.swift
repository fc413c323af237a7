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
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Glibc.close(fd)
            throw SupervisorError(.filesystem, "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
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
