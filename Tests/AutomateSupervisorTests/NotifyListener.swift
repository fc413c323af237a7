import Foundation
import Synchronization

/// A datagram socket the test binds, standing in for systemd's NOTIFY_SOCKET or journald's socket:
/// it records every datagram it receives, in order.
final class DatagramListener: Sendable {
    let path: String
    private let fd: Int32
    private let received = Mutex<[(at: ContinuousClock.Instant, text: String)]>([])

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw TestFailure("cannot bind \(path): \(String(cString: strerror(errno)))") }
        chmod(path, 0o666)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [self] in self.receive() }
        t.start()
    }

    private func receive() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 {
                let text = String(decoding: buffer[..<n], as: UTF8.self)
                received.withLock { $0.append((.now, text)) }
            } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                return
            }
        }
    }

    /// Every datagram so far.
    var messages: [(at: ContinuousClock.Instant, text: String)] { received.withLock { $0 } }

    /// Waits (polling its own record, with a deadline) until a datagram satisfies `predicate`.
    func waitFor(within timeout: Duration, _ predicate: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        // Looks once more after the deadline: a test task that got no thread for a while (a 2-core
        // machine running the whole suite) must not fail for a datagram that came in time.
        while true {
            if let hit = messages.first(where: { predicate($0.text) }) { return hit.text }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("no datagram matched within \(timeout); got: \(summary)")
    }

    /// What was received, in order, a run of the same datagram as one entry with its count
    /// ("WATCHDOG=1 ×150"): a failure message that keeps what matters readable.
    var summary: String {
        var runs: [(text: String, count: Int)] = []
        for message in messages {
            if runs.last?.text == message.text { runs[runs.count - 1].count += 1 } else { runs.append((message.text, 1)) }
        }
        return runs.map { $0.count == 1 ? $0.text : "\($0.text) ×\($0.count)" }.joined(separator: " | ")
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
        unlink(path)
    }
}
