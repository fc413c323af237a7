import AutomateRPC
import Foundation
import Logging
import SwiftProtobuf
#if canImport(Glibc)
import Glibc
#endif

/// The tests use the envelope message itself as their request/response type: `method` carries text,
/// `callID` a number, `payload` bytes.
typealias Msg = Automate_Rpc_Envelope

extension Msg {
    static func text(_ text: String, number: UInt64 = 0) -> Msg {
        var message = Msg()
        message.method = text
        message.callID = number
        return message
    }
}

/// A fresh directory for sockets (short: Unix socket paths are limited to 107 bytes).
struct TempDir {
    let path: String

    init() {
        path = "/tmp/arpc-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func socket(_ name: String = "svc.sock") -> String { "\(path)/run/\(name)" }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

let testLogger: Logger = {
    var logger = Logger(label: "automate.rpc.test")
    logger.logLevel = .critical
    return logger
}()

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing with `TimedOut` if it takes longer than `seconds`.
func within<T: Sendable>(
    _ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            throw TimedOut(what: what)
        }
        let result = try await group.next()!
        group.cancelAll()
        return result
    }
}

/// A one-shot signal a handler raises and a test awaits.
final class Signal: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream<Void>.makeStream()
    }

    func raise() { continuation.yield() }

    func wait(_ what: String, seconds: Double = 10) async throws {
        let stream = self.stream
        try await within(seconds, what) {
            for await _ in stream { return }
            throw TimedOut(what: what)
        }
    }
}

/// Starts a server with `register` applied, runs `body`, then shuts everything down.
func withServer(
    maxFrameSize: Int = 16 << 20,
    grace: Duration = .seconds(5),
    onEventLoop: Bool = false,
    idleTimeout: Duration? = .seconds(30),
    logger: Logger = testLogger,
    peers: RPCPeerPolicy? = nil,
    trustedOnlyMethods: [String]? = nil,
    _ register: (RPCServer) -> Void,
    _ body: (RPCServer, String) async throws -> Void
) async throws {
    let dir = TempDir()
    defer { dir.remove() }
    var configuration = RPCServer.Configuration(socketPath: dir.socket())
    configuration.maxFrameSize = maxFrameSize
    configuration.shutdownGracePeriod = grace
    configuration.runHandlersOnEventLoop = onEventLoop
    configuration.idleTimeout = idleTimeout
    configuration.peers = peers
    if let trustedOnlyMethods { configuration.trustedOnlyMethods = trustedOnlyMethods }
    let server = RPCServer(configuration: configuration, logger: logger)
    register(server)
    try await server.start()
    do {
        try await body(server, dir.socket())
    } catch {
        await server.shutdown()
        throw error
    }
    await server.shutdown()
}

/// Runs blocking work on a new thread and awaits its result.
func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

/// Runs blocking work that may throw on a new thread and awaits its result.
func onThreadThrowing<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await onThread { Result { try body() } }.get()
}

/// A length-prefixed frame holding `envelope`.
func frame(_ envelope: Msg) throws -> [UInt8] {
    let body: [UInt8] = try envelope.serializedBytes()
    let n = UInt32(body.count)
    return [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body
}

/// A plain blocking Unix socket, to send the server bytes no well-behaved client would.
final class RawSocket: @unchecked Sendable {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads one frame on a thread of its own (blocking reads must not starve the cooperative pool)
    /// and decodes it as an envelope; nil if the peer closed first.
    func readFrame() async throws -> Msg? {
        let bytes = await onThread { [self] in self.readFrameBytes() }
        return try bytes.map { try Msg(serializedBytes: $0) }
    }

    /// Reads until the peer closes, on a thread of its own: true if it closed (EOF or reset) within
    /// the receive timeout.
    func waitForClose() async -> Bool {
        await onThread { [self] in self.blockingWaitForClose() }
    }

    /// Reads one frame, blocking the calling thread (call it off the cooperative pool); nil if the
    /// peer closed first or it is not an envelope.
    func blockingReadEnvelope() -> Msg? {
        readFrameBytes().flatMap { try? Msg(serializedBytes: $0) }
    }

    /// Reads until the peer closes, blocking the calling thread: true if it closed (EOF or reset)
    /// within the receive timeout.
    private func readFrameBytes() -> [UInt8]? {
        guard let header = readExactly(4) else { return nil }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        return readExactly(length)
    }

    private func readExactly(_ count: Int) -> [UInt8]? {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        while result.count < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - result.count, 0) }
            if n <= 0 { return nil }
            result += buffer[0..<n]
        }
        return result
    }

    func blockingWaitForClose() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}
