import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// Hummingbird's HTTP/1 child channel with a ``FileRegionWriter`` beneath its HTTP codec, so that GETs on this
/// listener send their bodies with `sendfile`.
struct FileRegionHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let http1: HTTP1Channel

    /// Hummingbird's pipeline, then the writer right above the response encoder (where body parts may still be
    /// file regions).
    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let encoder = try pipeline.handler(type: HTTPResponseEncoder.self)
            try pipeline.addHandler(FileRegionWriter(), position: .after(encoder))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 whose GETs may send file regions (``FileRegionHTTP1Channel``).
    static func http1WithFileRegions(configuration: HTTP1Channel.Configuration) -> HTTPServerBuilder {
        .init { responder in FileRegionHTTP1Channel(http1: HTTP1Channel(responder: responder, configuration: configuration)) }
    }
}
