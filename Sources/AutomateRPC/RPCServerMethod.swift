import NIOCore
import SwiftProtobuf

/// A registered method with its message types erased: it decodes the request, runs the handler and
/// returns the call's final frame (OK, with the response payload for a unary call).
struct RPCServerMethod: Sendable {
    typealias Run = @Sendable (_ payload: ByteBuffer, _ context: RPCCallContext, _ stream: RPCServerCallStream)
        async throws -> ByteBuffer

    let run: Run

    static func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ handler: @escaping @Sendable (Request, RPCCallContext) async throws -> Response
    ) -> RPCServerMethod {
        RPCServerMethod { payload, context, _ in
            let request: Request = try decodeRequest(payload, method: context.method)
            let response = try await handler(request, context)
            let bytes: [UInt8]
            do {
                bytes = try response.serializedBytes()
            } catch {
                throw RPCError(.internal, "cannot encode the \(Response.protoMessageName) response: \(error)")
            }
            var frame = ByteBuffer()
            frame.reserveCapacity(bytes.count + 24)
            RPCEnvelope.writeFrame(into: &frame, callID: context.callID, payloadBytes: bytes, endOfStream: true)
            return frame
        }
    }

    static func serverStream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ handler: @escaping @Sendable (Request, RPCResponseWriter<Response>, RPCCallContext) async throws -> Void
    ) -> RPCServerMethod {
        RPCServerMethod { payload, context, stream in
            let request: Request = try decodeRequest(payload, method: context.method)
            try await handler(request, RPCResponseWriter(stream: stream), context)
            var frame = ByteBuffer()
            RPCEnvelope.writeFrame(into: &frame, callID: context.callID, endOfStream: true)
            return frame
        }
    }

    private static func decodeRequest<Request: SwiftProtobuf.Message>(
        _ payload: ByteBuffer, method: String
    ) throws -> Request {
        do {
            return try Request(buffer: payload)
        } catch {
            throw RPCUndecodableRequestError(
                status: RPCError(
                    .invalidArgument,
                    "request for \(method) is not a valid \(Request.protoMessageName): \(error)"))
        }
    }
}

/// A request payload that is not the method's request type: the client gets `status`
/// (INVALID_ARGUMENT) and the connection counts it as malformed input.
struct RPCUndecodableRequestError: Error {
    var status: RPCError
}
