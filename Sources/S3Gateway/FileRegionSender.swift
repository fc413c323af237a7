import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A request's way to send part of a file as its response body through its connection's ``FileRegionWriter``.
struct FileRegionSender: Sendable {
    let channel: any Channel

    /// Hands `length` bytes of the open file `fd` from `offset` to the connection, to be written when the
    /// response ends (the caller then finishes its body without writing any bytes). Returns a future that
    /// completes once the bytes are sent (or fails when the connection went first), or nil when this connection
    /// cannot send file regions (the TLS listener, a closed channel): the caller writes the bytes itself.
    /// `fd` is duplicated; the caller keeps and closes its own.
    func send(fd: CInt, offset: Int, length: Int) async -> EventLoopFuture<Void>? {
        let copy = dup(fd)
        guard copy >= 0 else { return nil }
        let region = FileRegion(fileHandle: NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: copy),
                                readerIndex: offset, endIndex: offset + length)
        let channel = self.channel
        let sent = try? await channel.eventLoop.submit { () -> EventLoopFuture<Void>? in
            guard let writer = try? channel.pipeline.syncOperations.handler(type: FileRegionWriter.self) else { return nil }
            let promise = channel.eventLoop.makePromise(of: Void.self)
            guard writer.accept(region, sent: promise) else {
                promise.fail(ChannelError.inappropriateOperationForState)
                return nil
            }
            return promise.futureResult
        }.get()
        guard let sent else {
            FileRegionWriter.release(region)
            return nil
        }
        return sent
    }
}
