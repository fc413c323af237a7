import SwiftProtobuf

extension RPCClient {
    /// Calls a unary method described by a generated descriptor: sends `request`, returns the
    /// response. Failures throw `RPCError` as `unary(_:_:as:timeout:)` does.
    ///
    /// - Parameter timeout: the call's deadline, enforced here and by the server. Nil means none.
    public func call<Request, Response>(
        _ method: RPCUnaryMethod<Request, Response>,
        _ request: Request,
        timeout: Duration? = nil
    ) async throws -> Response {
        try await unary(method.name, request, as: Response.self, timeout: timeout)
    }

    /// Calls a server-streaming method described by a generated descriptor: the stream yields the
    /// server's messages in order and ends when the call does (throwing its `RPCError` if it
    /// failed). Ending iteration early cancels the call on the server.
    public func stream<Request, Response>(
        _ method: RPCServerStreamMethod<Request, Response>,
        _ request: Request,
        timeout: Duration? = nil
    ) -> AsyncThrowingStream<Response, Error> {
        serverStream(method.name, request, as: Response.self, timeout: timeout)
    }
}
