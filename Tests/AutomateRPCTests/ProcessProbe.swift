import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What the test process (which hosts the servers under test) holds right now, from /proc/self (its
/// memory: `ProcessMemory`).
enum ProcessProbe {
    /// Open file descriptors (entries of /proc/self/fd).
    static func openDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }
}

/// Log lines a server wrote, kept for assertions. The lock guards `lines`; log handlers on any
/// thread append.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var captured: [String] = []

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return captured
    }

    /// A logger at `level` whose lines land here.
    func logger(level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "automate.rpc.test.capture") { _ in CapturingLogHandler(capture: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: String) {
        lock.lock()
        captured.append(line)
        lock.unlock()
    }
}

private struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        capture.append("\(event.level) \(event.message)")
    }
}

/// Blocking reads of many raw sockets at once, with poll(2), on a thread of its own.
enum RawSocketWatch {
    /// Waits until every socket has been closed by the server (EOF or reset) or `seconds` pass;
    /// returns, per socket, how long after `origin` (`DispatchTime.now().uptimeNanoseconds`; default:
    /// when the watch begins) it closed (nil if it did not). Data the server sends first is read and dropped.
    static func closeTimes(of sockets: [RawSocket], seconds: Double, since origin: UInt64? = nil) async -> [Double?] {
        let fds = sockets.map(\.fd)
        return await onThread {
            let start = origin ?? DispatchTime.now().uptimeNanoseconds
            var result = [Double?](repeating: nil, count: fds.count)
            var open = Set(fds.indices)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !open.isEmpty {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if elapsed >= seconds { break }
                var polls = open.map { pollfd(fd: fds[$0], events: Int16(POLLIN), revents: 0) }
                let indices = Array(open)
                let ready = poll(&polls, nfds_t(polls.count), Int32(min(1000, (seconds - elapsed) * 1000) + 1))
                if ready <= 0 { continue }
                let now = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                for (slot, poll) in polls.enumerated() where poll.revents != 0 {
                    let index = indices[slot]
                    let n = buffer.withUnsafeMutableBytes { recv(fds[index], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                        result[index] = now
                        open.remove(index)
                    }
                }
            }
            return result
        }
    }
}
