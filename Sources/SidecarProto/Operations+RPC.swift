import AutomateRPC
import Operations
import SwiftProtobuf

extension RPCError {
    /// An operation-layer error as a sidecar's caller sees it: NOT_FOUND or ALREADY_EXISTS, with the
    /// message naming the sidecar and the operation.
    public init(_ error: OperationError) {
        self.init(error.code == .notFound ? .notFound : error.code == .alreadyExists ? .alreadyExists : .internal, error.message)
    }
}

extension ProgressRegistry {
    /// Answers a `WatchStatus` call: sends operation `id`'s snapshot, then every change in order, each
    /// as `wire` puts it, until the operation ends. NOT_FOUND (naming the owner) when it is unknown here.
    public nonisolated func stream<Status: SwiftProtobuf.Message>(
        _ id: String, to writer: RPCResponseWriter<Status>, _ wire: @Sendable (Snapshot) -> Status
    ) async throws {
        let updates: AsyncStream<Snapshot>
        do { updates = try await watch(id) } catch let e as OperationError { throw RPCError(e) }
        for await s in updates { try await writer.send(wire(s)) }
    }
}
