import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import SwiftProtobuf

/// grpc-swift-2 over HTTP/2 on a Unix socket, with a hand-written service (no generated stubs).
enum GRPCEcho {
    static let descriptor = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Echo")

    struct Service: RegistrableRPCService {
        func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
            router.registerHandler(
                forMethod: GRPCEcho.descriptor,
                deserializer: ProtobufDeserializer<Google_Protobuf_BytesValue>(),
                serializer: ProtobufSerializer<Google_Protobuf_BytesValue>()
            ) { request, _ in
                let single = try await ServerRequest(stream: request)
                return StreamingServerResponse(single: ServerResponse(message: single.message))
            }
        }
    }

    static func call(_ client: GRPCClient<HTTP2ClientTransport.Posix>, _ message: Google_Protobuf_BytesValue) async throws
        -> Google_Protobuf_BytesValue
    {
        try await client.unary(
            request: ClientRequest(message: message),
            descriptor: descriptor,
            serializer: ProtobufSerializer<Google_Protobuf_BytesValue>(),
            deserializer: ProtobufDeserializer<Google_Protobuf_BytesValue>(),
            options: .defaults
        ) { response in
            try response.message
        }
    }
}
