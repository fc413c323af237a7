import SwiftProtobuf

/// A method of a service declared in a `.proto` file: its name on the wire and its message types.
///
/// The descriptors are generated (`scripts/generate-rpc.py` writes a `<file>.rpc.swift` beside each
/// `.proto` with a `service` block), so a call site names neither the method string nor the
/// response type: `client.call(PGSidecarService.createBackup, request)`.
public protocol RPCMethod: Sendable {
    /// The request message.
    associatedtype Request: SwiftProtobuf.Message
    /// The response message (each message of the stream, for a server-streaming method).
    associatedtype Response: SwiftProtobuf.Message

    /// The method's name on the wire, exactly as servers register it.
    var name: String { get }
    /// Whether the server answers with a stream of responses.
    var isServerStreaming: Bool { get }
}

/// A unary method: one request, one response.
public struct RPCUnaryMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: RPCMethod {
    /// The method's name on the wire.
    public let name: String
    /// False: one response.
    public var isServerStreaming: Bool { false }

    /// A descriptor for the method called `name` on the wire.
    public init(_ name: String) {
        self.name = name
    }
}

/// A server-streaming method: one request, then any number of responses in order.
public struct RPCServerStreamMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: RPCMethod {
    /// The method's name on the wire.
    public let name: String
    /// True: a stream of responses.
    public var isServerStreaming: Bool { true }

    /// A descriptor for the method called `name` on the wire.
    public init(_ name: String) {
        self.name = name
    }
}
