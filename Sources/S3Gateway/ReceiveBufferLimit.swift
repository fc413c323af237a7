import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Caps each socket read of a connection at 16 KiB. A request whose body waits (for the disk, or for the
/// gateway's write-buffer budget) lets its channel read ahead only a few reads before NIO stops reading the
/// socket, so this bounds what a waiting connection holds in memory (~160 KiB); the rest of its body stays in
/// the kernel's socket buffer and the client is slowed down by TCP.
final class ReceiveBufferLimit: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    static let maximumRead = 16 << 10

    func handlerAdded(context: ChannelHandlerContext) {
        let allocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: Self.maximumRead, maximum: Self.maximumRead)
        try? context.channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: allocator)
    }
}
