import NIOCore
import SwiftProtobuf
#if canImport(Glibc)
import Glibc
#endif

/// A client that makes unary calls one at a time on a blocking Unix-socket connection, with no event loop
/// and no threads: the same wire format and status codes as `RPCClient`, for a short-lived command that
/// makes one call and exits. `automate-wal` is one: PostgreSQL starts it for every WAL file, and starting
/// NIO's event loop threads cost more than its call.
///
/// Not thread-safe: one caller at a time. Server-streaming methods need `RPCClient`.
public final class RPCBlockingClient {
    /// The socket this client is connected to.
    public let socketPath: String
    private let maxFrameSize: Int
    private var fd: Int32
    private var nextCallID: UInt64 = 1
    /// Bytes read past the end of the last frame.
    private var pending: [UInt8] = []

    /// Connects to the server listening on `socketPath`. Throws `.unavailable` naming the socket when
    /// nothing listens there. `maxFrameSize` bounds a response frame, as `RPCClient.connect` does.
    public init(socketPath: String, maxFrameSize: Int = 16 << 20) throws {
        self.socketPath = socketPath
        self.maxFrameSize = maxFrameSize
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw RPCError(.invalidArgument, "the socket path \(socketPath) is \(path.count) bytes long; a Unix socket path holds at most \(MemoryLayout.size(ofValue: address.sun_path) - 1)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RPCError(.unavailable, "cannot make a socket: \(Self.errorText())") }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let text = Self.errorText()
            // Closed here and marked so: a class whose init throws once every property is set still runs
            // its deinit, and a second close would close whatever descriptor took the number meanwhile.
            Glibc.close(fd)
            fd = -1
            throw RPCError(.unavailable, "cannot connect to \(socketPath): \(text)")
        }
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Calls a unary method and waits for its answer, at most `timeout` (the server is told the same
    /// deadline). Throws the call's `RPCError`: the server's status, `.deadlineExceeded`, or `.unavailable`
    /// when the connection closes first.
    public func call<Request, Response>(
        _ method: RPCUnaryMethod<Request, Response>,
        _ request: Request,
        timeout: Duration
    ) throws -> Response {
        let callID = nextCallID
        nextCallID += 1
        let deadline = ContinuousClock.now + timeout
        let payload: [UInt8]
        do {
            payload = try request.serializedBytes()
        } catch {
            throw RPCError(.invalidArgument, "cannot encode the \(Request.protoMessageName) request for \(method.name): \(error)")
        }
        var buffer = ByteBuffer()
        RPCEnvelope.writeFrame(
            into: &buffer, callID: callID, method: method.name, payloadBytes: payload, timeoutMicros: RPCClient.wireMicros(timeout))
        guard buffer.readableBytes - 4 <= maxFrameSize else {
            throw RPCError(.resourceExhausted, "the \(method.name) request is \(buffer.readableBytes - 4) bytes, above the maximum frame size of \(maxFrameSize) bytes")
        }
        let frame = buffer.readBytes(length: buffer.readableBytes)!
        try send(frame, method: method.name, deadline: deadline, timeout: timeout)
        while true {
            let answer = try RPCEnvelope(decoding: ByteBuffer(bytes: try readFrame(method: method.name, deadline: deadline, timeout: timeout)))
            guard answer.callID == callID, answer.endOfStream else { continue }
            guard answer.statusCode == 0 else {
                throw RPCError(RPCStatusCode(rawValue: answer.statusCode) ?? .unknown, answer.statusMessage)
            }
            do {
                return try Response(serializedBytes: Array(buffer: answer.payload))
            } catch {
                throw RPCError(.internal, "the \(Response.protoMessageName) response of \(method.name) does not decode: \(error)")
            }
        }
    }

    private func send(_ bytes: [UInt8], method: String, deadline: ContinuousClock.Instant, timeout: Duration) throws {
        var offset = 0
        while offset < bytes.count {
            try wait(for: Int16(POLLOUT), method: method, deadline: deadline, timeout: timeout)
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                continue
            } else {
                throw RPCError(.unavailable, "the connection to the server closed (sending \(method): \(Self.errorText()))")
            }
        }
    }

    /// One frame's envelope bytes.
    private func readFrame(method: String, deadline: ContinuousClock.Instant, timeout: Duration) throws -> [UInt8] {
        try fill(4, method: method, deadline: deadline, timeout: timeout)
        let length = Int(pending[0]) << 24 | Int(pending[1]) << 16 | Int(pending[2]) << 8 | Int(pending[3])
        guard length <= maxFrameSize else {
            throw RPCError(.resourceExhausted, RPCFrameTooLargeError(length: length, maxFrameSize: maxFrameSize).description)
        }
        try fill(4 + length, method: method, deadline: deadline, timeout: timeout)
        let frame = Array(pending[4..<(4 + length)])
        pending.removeFirst(4 + length)
        return frame
    }

    /// Reads until `pending` holds at least `count` bytes.
    private func fill(_ count: Int, method: String, deadline: ContinuousClock.Instant, timeout: Duration) throws {
        guard pending.count < count else { return }
        pending.reserveCapacity(count)
        var chunk = [UInt8](repeating: 0, count: min(1 << 20, max(count - pending.count, 64 << 10)))
        while pending.count < count {
            try wait(for: Int16(POLLIN), method: method, deadline: deadline, timeout: timeout)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 {
                pending.append(contentsOf: chunk[0..<n])
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                continue
            } else {
                throw RPCError(.unavailable, n == 0 ? "the connection to the server closed" : "the connection to the server failed: \(Self.errorText())")
            }
        }
    }

    private func wait(for events: Int16, method: String, deadline: ContinuousClock.Instant, timeout: Duration) throws {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { throw RPCError(.deadlineExceeded, "\(method) did not finish within its timeout of \(timeout)") }
            let (seconds, attoseconds) = left.components
            let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let r = poll(&entry, 1, milliseconds)
            if r > 0 { return }
            if r < 0 && errno != EINTR { throw RPCError(.unavailable, "the connection to the server failed: \(Self.errorText())") }
        }
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
