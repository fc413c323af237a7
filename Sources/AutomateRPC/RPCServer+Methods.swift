import SwiftProtobuf

extension RPCServer {
    /// Registers the handler of a unary method described by a generated descriptor (see
    /// `registerUnary(_:_:)` for when to register and what replacing does).
    public func register<Request, Response>(
        _ method: RPCUnaryMethod<Request, Response>,
        _ handler: @escaping @Sendable (Request, RPCCallContext) async throws -> Response
    ) {
        registerUnary(method.name, handler)
    }

    /// Registers the handler of a server-streaming method described by a generated descriptor: it
    /// sends any number of responses through the writer, then returns (OK) or throws (the status).
    public func register<Request, Response>(
        _ method: RPCServerStreamMethod<Request, Response>,
        _ handler: @escaping @Sendable (Request, RPCResponseWriter<Response>, RPCCallContext) async throws -> Void
    ) {
        registerServerStream(method.name, handler)
    }
}
