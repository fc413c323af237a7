import NIOCore
import SwiftProtobuf

/// Sends the messages of a server-streaming call, in order.
public struct RPCResponseWriter<Response: SwiftProtobuf.Message>: Sendable {
    let stream: RPCServerCallStream

    /// Sends one message. Waits while the connection cannot take more data (backpressure), so a
    /// slow client slows the handler down instead of growing memory.
    ///
    /// Throws `CancellationError` when the handler's task is cancelled, and `RPCError(.cancelled)`
    /// when the call is already over (the client cancelled or went away, or the deadline passed).
    public func send(_ response: Response) async throws {
        try Task.checkCancellation()
        let bytes: [UInt8]
        do {
            bytes = try response.serializedBytes()
        } catch {
            throw RPCError(.internal, "cannot encode the \(Response.protoMessageName) message: \(error)")
        }
        var frame = ByteBuffer()
        frame.reserveCapacity(bytes.count + 16)
        RPCEnvelope.writeFrame(into: &frame, callID: stream.callID, payloadBytes: bytes)
        try await stream.send(frame: frame)
    }
}

/// The server side of one call, as seen from the handler's task: writes frames through the
/// connection's event loop.
struct RPCServerCallStream: Sendable {
    let callID: UInt64
    let connection: NIOLoopBound<RPCServerConnectionHandler>

    func send(frame: ByteBuffer) async throws {
        let connection = self.connection
        let callID = self.callID
        try await connection.eventLoop.flatSubmit {
            connection.value.writeStreamMessage(callID: callID, frame: frame)
        }.get()
    }
}
