import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Sizes each socket read of a connection so that what all connections can hold in memory stays bounded.
///
/// A request whose body waits (for the disk, or for the gateway's write-buffer budget) lets its channel read
/// ahead about ``readsHeldPerConnection`` reads before NIO stops reading the socket; the rest of its body stays
/// in the kernel's socket buffer and TCP slows the client down. Each read costs a trip through the HTTP
/// decoder, the request's async stream and a task wake-up, so a lone upload wants large reads (fewer trips,
/// less CPU per byte), while a hundred concurrent uploads want small ones (bounded memory). The read size is
/// therefore ``budget`` shared by the open connections: the largest power of two in
/// `minimumRead...maximumRead` such that `open connections × readsHeldPerConnection × size <= budget`, but
/// never less than `minimumRead` (from 37 connections on, what they can hold is their number × 14 × 8 KiB), and
/// re-evaluated after each burst of reads.
final class ReceiveBufferLimit: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    /// Bytes of socket reads all connections together may hold while their requests wait.
    static let budget = 4 << 20
    /// Reads a waiting connection holds at most: NIOAsyncChannel's high watermark (10) plus one read loop (4).
    static let readsHeldPerConnection = 14
    static let minimumRead = 8 << 10
    /// 128 KiB: a receive buffer stays below glibc's mmap threshold as the gateway tunes it (no page faults per read).
    static let maximumRead = 128 << 10

    /// Connections open in this process (every gateway in it shares the budget).
    private static let openConnections = Atomic<Int>(0)
    private var readSize = 0

    /// The read size for `connections` open connections.
    static func readSize(connections: Int) -> Int {
        let share = budget / (max(connections, 1) * readsHeldPerConnection)
        var size = minimumRead
        while size * 2 <= min(share, maximumRead) { size *= 2 }
        return size
    }

    func handlerAdded(context: ChannelHandlerContext) {
        Self.openConnections.add(1, ordering: .relaxed)
        resize(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        Self.openConnections.subtract(1, ordering: .relaxed)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        resize(context: context)
        context.fireChannelReadComplete()
    }

    private func resize(context: ChannelHandlerContext) {
        let size = Self.readSize(connections: Self.openConnections.load(ordering: .relaxed))
        guard size != readSize else { return }
        readSize = size
        let allocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: size, maximum: size)
        try? context.channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: allocator)
    }
}
