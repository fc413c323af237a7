import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf

/// A connection to an `RPCServer`, safe to share: any number of tasks may call through it at once,
/// and their calls are multiplexed on the one socket.
///
/// Failed calls throw `RPCError`: the server's status, DEADLINE_EXCEEDED when `timeout` passes,
/// CANCELLED when the calling task is cancelled, UNAVAILABLE when the connection is gone.
public final class RPCClient: Sendable {
    /// The socket this client is connected to.
    public let socketPath: String
    private let channel: any Channel
    private let handler: NIOLoopBound<RPCClientConnectionHandler>
    private let starts: RPCLoopInbox<RPCClientConnectionHandler.Start>
    private let maxFrameSize: Int
    private let nextCallID = LockedValue<UInt64>(0)

    private init(
        socketPath: String, maxFrameSize: Int, channel: any Channel, handler: NIOLoopBound<RPCClientConnectionHandler>,
        starts: RPCLoopInbox<RPCClientConnectionHandler.Start>
    ) {
        self.starts = starts
        self.socketPath = socketPath
        self.maxFrameSize = maxFrameSize
        self.channel = channel
        self.handler = handler
    }

    deinit {
        // A client dropped without close(): do not leak its socket.
        channel.close(promise: nil)
    }

    /// Connects to the server listening on `socketPath`.
    ///
    /// - Parameters:
    ///   - maxFrameSize: the largest frame accepted from the server (default 16 MiB); a larger one
    ///     closes the connection.
    ///   - eventLoopGroup: the loops to run on; NIO's shared singleton group by default.
    ///   - logger: where connection errors are logged.
    /// - Throws: `RPCError(.unavailable, "cannot connect to <path>: <reason>")`.
    public static func connect(
        socketPath: String,
        maxFrameSize: Int = 16 << 20,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "automate.rpc.client")
    ) async throws -> RPCClient {
        var logger = logger
        logger[metadataKey: "rpc.socket"] = "\(socketPath)"
        let handlerLogger = logger
        let bootstrap = ClientBootstrap(group: eventLoopGroup)
            .channelOption(.maxMessagesPerRead, value: 16)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RPCFrameDecoder(maxFrameSize: maxFrameSize)),
                        RPCClientConnectionHandler(logger: handlerLogger, eventLoop: channel.eventLoop)
                    )
                }
            }
        do {
            let channel = try await bootstrap.connect(unixDomainSocketPath: socketPath).get()
            let (handler, starts) = try await channel.eventLoop.submit {
                let handler = try channel.pipeline.syncOperations.handler(type: RPCClientConnectionHandler.self)
                return (NIOLoopBound(handler, eventLoop: channel.eventLoop), handler.starts!)
            }.get()
            return RPCClient(
                socketPath: socketPath, maxFrameSize: maxFrameSize, channel: channel, handler: handler, starts: starts)
        } catch {
            throw RPCError(.unavailable, "cannot connect to \(socketPath): \(Self.describe(error))")
        }
    }

    /// Calls a unary method by name: sends `request`, returns the response.
    ///
    /// The low-level layer under `call(_:_:timeout:)`: prefer the typed descriptors generated from
    /// the `.proto` service blocks, which fix the name and both message types in one place.
    ///
    /// - Parameter timeout: the call's deadline, enforced here and by the server (whose handler is
    ///   cancelled when it passes). Nil means none.
    public func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String,
        _ request: Request,
        as: Response.Type = Response.self,
        timeout: Duration? = nil
    ) async throws -> Response {
        let callID = allocateCallID()
        let frame = try requestFrame(callID: callID, method: method, request: request, timeout: timeout)
        let handler = self.handler
        let starts = self.starts
        let payload: ByteBuffer = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                starts.submit(.unary(callID: callID, frame: frame, timeout: timeout, method: method, continuation))
            }
        } onCancel: {
            handler.eventLoop.execute {
                handler.value.cancel(callID: callID, RPCError(.cancelled, "\(method) was cancelled by the caller"))
            }
        }
        do {
            return try Response(buffer: payload)
        } catch {
            throw RPCError(.internal, "the response to \(method) is not a valid \(Response.protoMessageName): \(error)")
        }
    }

    /// Calls a server-streaming method: the stream yields the server's messages in order and ends
    /// when the call does (throwing its `RPCError` if it failed). Ending iteration early (break,
    /// or cancelling the iterating task) cancels the call on the server.
    ///
    /// The low-level layer under `stream(_:_:timeout:)`: prefer the typed descriptors.
    public func serverStream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String,
        _ request: Request,
        as: Response.Type = Response.self,
        timeout: Duration? = nil
    ) -> AsyncThrowingStream<Response, Error> {
        let (stream, continuation) = AsyncThrowingStream<Response, Error>.makeStream()
        let callID = allocateCallID()
        let frame: ByteBuffer
        do {
            frame = try requestFrame(callID: callID, method: method, request: request, timeout: timeout)
        } catch {
            continuation.finish(throwing: error)
            return stream
        }
        let handler = self.handler
        let sink = RPCClientConnectionHandler.StreamSink(
            message: { payload in
                do {
                    continuation.yield(try Response(buffer: payload))
                } catch {
                    let error = RPCError(
                        .internal, "a message of \(method) is not a valid \(Response.protoMessageName): \(error)")
                    continuation.finish(throwing: error)
                    handler.value.cancel(callID: callID, error)
                }
            },
            finish: { error in continuation.finish(throwing: error) }
        )
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                handler.eventLoop.execute {
                    handler.value.cancel(callID: callID, RPCError(.cancelled, "\(method) was cancelled by the caller"))
                }
            }
        }
        starts.submit(.stream(callID: callID, frame: frame, timeout: timeout, method: method, sink))
        return stream
    }

    /// False once the connection is closed (by ``close()``, by the server, which closes a connection that
    /// sent nothing for its idle timeout, or by an error): a client kept for later calls connects again.
    public var isActive: Bool { channel.isActive }

    /// Closes the connection; calls still pending fail with UNAVAILABLE.
    public func close() async {
        let handler = self.handler
        handler.eventLoop.execute { handler.value.shutDown() }
        try? await channel.closeFuture.get()
    }

    // MARK: helpers

    private func allocateCallID() -> UInt64 {
        nextCallID.withLockedValue { id in
            id &+= 1
            return id
        }
    }

    /// A timeout as the envelope's `timeout_micros`: rounded up to whole microseconds, at least 1 (0 would
    /// mean "no deadline").
    static func wireMicros(_ timeout: Duration) -> UInt64 {
        let nanoseconds = TimeAmount(timeout).nanoseconds
        return UInt64(max(1, nanoseconds / 1000 + (nanoseconds % 1000 > 0 ? 1 : 0)))
    }

    private func requestFrame<Request: SwiftProtobuf.Message>(
        callID: UInt64, method: String, request: Request, timeout: Duration?
    ) throws -> ByteBuffer {
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw RPCError(.invalidArgument, "cannot encode the \(Request.protoMessageName) request for \(method): \(error)")
        }
        let timeoutMicros = timeout.map(Self.wireMicros) ?? 0
        var frame = ByteBuffer()
        frame.reserveCapacity(bytes.count + method.utf8.count + 32)
        RPCEnvelope.writeFrame(
            into: &frame, callID: callID, method: method, payloadBytes: bytes, timeoutMicros: timeoutMicros)
        guard frame.readableBytes - 4 <= maxFrameSize else {
            throw RPCError(
                .resourceExhausted,
                "the \(method) request frame of \(frame.readableBytes - 4) bytes exceeds the maximum frame size of \(maxFrameSize) bytes")
        }
        return frame
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError {
            return error.description
        }
        return "\(error)"
    }
}
