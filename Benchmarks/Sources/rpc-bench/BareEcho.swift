import NIOCore
import NIOPosix

/// The floor: a swift-nio length-prefixed echo over a Unix socket, with no envelope, no protobuf and
/// no task per call. The client keeps one continuation per call, answered in order (FIFO).
enum BareEcho {
    /// Splits the stream into 4-byte big-endian length-prefixed frames (prefix included).
    struct FrameDecoder: ByteToMessageDecoder {
        typealias InboundOut = ByteBuffer
        mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
                buffer.readableBytes >= 4 + Int(length)
            else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: 4 + Int(length))!))
            return .continue
        }
    }

    final class ServerHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.write(data, promise: nil)
        }
        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }
    }

    final class ClientHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private var waiting = CircularBuffer<CheckedContinuation<ByteBuffer, any Error>>()
        private var context: ChannelHandlerContext?
        private var flushScheduled = false

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }

        func send(_ frame: ByteBuffer, _ continuation: CheckedContinuation<ByteBuffer, any Error>) {
            guard let context else { return continuation.resume(throwing: ChannelError.ioOnClosedChannel) }
            waiting.append(continuation)
            context.write(wrapOutboundOut(frame), promise: nil)
            if !flushScheduled {
                flushScheduled = true
                let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                context.eventLoop.execute {
                    bound.value.flushScheduled = false
                    bound.value.context?.flush()
                }
            }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            waiting.removeFirst().resume(returning: unwrapInboundIn(data))
        }

        func channelInactive(context: ChannelHandlerContext) {
            while let continuation = waiting.popFirst() { continuation.resume(throwing: ChannelError.ioOnClosedChannel) }
        }
    }

    static func startServer(path: String) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(FrameDecoder()), ServerHandler())
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
    }

    final class Client: Sendable {
        let handler: NIOLoopBound<ClientHandler>
        let channel: any Channel

        init(path: String) async throws {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(FrameDecoder()), ClientHandler())
                    }
                }
                .connect(unixDomainSocketPath: path).get()
            let channel = self.channel
            handler = try await channel.eventLoop.submit {
                NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientHandler.self), eventLoop: channel.eventLoop)
            }.get()
        }

        func echo(_ payload: [UInt8]) async throws -> ByteBuffer {
            var frame = ByteBuffer()
            frame.writeInteger(UInt32(payload.count))
            frame.writeBytes(payload)
            let handler = self.handler
            return try await withCheckedThrowingContinuation { continuation in
                handler.eventLoop.execute { handler.value.send(frame, continuation) }
            }
        }
    }
}
