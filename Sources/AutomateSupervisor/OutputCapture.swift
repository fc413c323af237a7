import CAutomateShims
import Foundation
import NIOCore
import NIOPosix

/// Reads a child's output pipe line by line on an event loop and hands each line to a sink.
///
/// A line longer than ``maxLineBytes`` is cut into pieces of that size, so a process writing without
/// newlines cannot make the supervisor's memory grow.
public enum OutputCapture {
    /// The longest line kept whole.
    public static let maxLineBytes = 16 * 1024

    /// Takes ownership of `readEnd` (the read end of a pipe) and delivers its lines to `sink` until
    /// every writer has closed it. The returned future completes after the last line was delivered.
    public static func capture(
        readEnd: Int32,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        sink: @escaping @Sendable (String) -> Void
    ) async throws -> EventLoopFuture<Void> {
        let channel = try await NIOPipeBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(LineSplitter(sink: sink))
                }
            }
            .takingOwnershipOfDescriptor(input: readEnd)
            .get()
        return channel.closeFuture
    }

    /// Makes a pipe whose read end is close-on-exec; the write end is inherited only through dup2.
    public static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard automate_pipe_cloexec(&fds) == 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        return (fds[0], fds[1])
    }
}

private final class LineSplitter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let sink: @Sendable (String) -> Void
    private var pending = ByteBuffer()

    init(sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        pending.writeBuffer(&incoming)
        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - pending.readerIndex
            emit(pending.readString(length: length) ?? "")
            pending.moveReaderIndex(forwardBy: 1)
        }
        while pending.readableBytes >= OutputCapture.maxLineBytes {
            emit(pending.readString(length: OutputCapture.maxLineBytes) ?? "")
        }
        pending.discardReadBytes()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelEvent, case .inputClosed = event as! ChannelEvent {
            flushRemainder()
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        flushRemainder()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func flushRemainder() {
        if pending.readableBytes > 0 {
            emit(pending.readString(length: pending.readableBytes) ?? "")
        }
    }

    private func emit(_ line: String) {
        var text = line
        if text.hasSuffix("\r") { text.removeLast() }
        sink(text)
    }
}
