import Hummingbird
import NIOCore

/// Hummingbird's basic request context plus the request's connection (a GET hands its file to it).
public struct GatewayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came in on.
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
