import NIOCore
import NIOHTTP1

/// Sends a GET's body from the object's file straight to the socket (`sendfile`, one copy in the kernel).
///
/// Hummingbird's response writer takes byte buffers only, so a body read through it costs two copies (file into
/// a buffer, buffer into the socket) and a hop between the file pool, the request task and the event loop per
/// chunk. This handler sits beneath Hummingbird's HTTP codec, where a body part may be a `FileRegion`: a GET
/// hands it the byte range through ``FileRegionSender/send(fd:offset:length:)`` and then ends its response
/// with no body bytes; when the response's end passes, the handler writes the region before it, and NIO sends
/// it with `sendfile` as the socket drains (the region is one pending write: no buffer, whatever its size).
///
/// It is only in the pipeline of the plain listener (TLS needs the bytes in user space); a GET on a
/// connection without it streams its body through buffers as before.
final class FileRegionWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A region handed over for the response being written, and who waits for it to be sent.
    private struct Pending {
        var region: FileRegion
        var sent: EventLoopPromise<Void>
    }

    private var pending: Pending?
    /// The `Content-Length` of the response being written (a region must fill it exactly).
    private var declaredLength: Int?

    /// Takes `region` for the response being written (its end not yet written). Returns false, and the caller
    /// keeps the region, when one is already waiting.
    func accept(_ region: FileRegion, sent: EventLoopPromise<Void>) -> Bool {
        guard pending == nil else { return false }
        pending = Pending(region: region, sent: sent)
        return true
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            declaredLength = head.headers.first(name: "content-length").flatMap { Int($0) }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            guard let p = pending else {
                context.write(data, promise: promise)
                return
            }
            pending = nil
            guard p.region.readableBytes == declaredLength else {
                // Never frame a response wrongly: the connection goes, and the request fails.
                let error = FileRegionLengthError(region: p.region.readableBytes, declared: declaredLength)
                Self.release(p.region)
                p.sent.fail(error)
                promise?.fail(error)
                context.close(promise: nil)
                return
            }
            let region = p.region
            context.write(wrapOutboundOut(.body(.fileRegion(region)))).whenComplete { result in
                Self.release(region)
                p.sent.completeWith(result)
            }
            context.write(data, promise: promise)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guard let p = pending else { return }
        pending = nil
        Self.release(p.region)
        p.sent.fail(ChannelError.ioOnClosedChannel)
    }

    /// Closes the region's own descriptor (a duplicate of the object's).
    static func release(_ region: FileRegion) {
        try? region.fileHandle.close()
    }
}

/// A response's `Content-Length` and the file region meant to fill it disagree (a bug, never sent).
struct FileRegionLengthError: Error, CustomStringConvertible {
    var region: Int
    var declared: Int?
    var description: String {
        "a \(region)-byte file region for a response declaring \(declared.map(String.init) ?? "no") Content-Length; connection closed"
    }
}
