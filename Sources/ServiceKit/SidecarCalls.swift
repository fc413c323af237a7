import AutomateRPC
import Foundation
import SidecarProto
import SwiftProtobuf

/// Calls into the pg and es sidecars on their sockets, following each operation to its end through the
/// sidecar's `WatchStatus` stream (every change pushed, in order; no polling).
///
/// When the calling task is cancelled the sidecar is told (`Cancel`: it kills its tools' process groups
/// and aborts its uploads) before the call returns. A sidecar that does not know the operation (it
/// restarted) or whose stream breaks (it died) fails the call at once, naming the sidecar.
struct SidecarCalls: Sendable {
    let config: KitConfig

    typealias PGStatus = Automate_Sidecar_Pg_PGStatus
    typealias ESStatus = Automate_Sidecar_Es_ESStatus

    static let pgSidecar = "pg-sidecar-service"
    static let esSidecar = "es-sidecar-service"

    /// Starts a pg-sidecar operation and follows it until it ends; `update` sees every status, in order.
    func pgOperation(
        start: @Sendable (RPCClient) async throws -> String, update: @Sendable (PGStatus) -> Void
    ) async throws -> PGStatus {
        try await follow(
            sidecar: Self.pgSidecar, socket: config.pgSidecarSocket, start: start,
            request: { var r = Automate_Sidecar_Pg_PGStatusRequest(); r.operationID = $0; return r },
            watch: PGSidecarService.watchStatus, cancel: PGSidecarService.cancel, update: update, done: { _ in false })
    }

    /// Starts an es-sidecar operation and follows it until it ends or `done` says so (a restore whose
    /// short-term part is enough for the caller); `update` sees every status, in order.
    func esOperation(
        start: @Sendable (RPCClient) async throws -> String, update: @Sendable (ESStatus) -> Void,
        done: @escaping @Sendable (ESStatus) -> Bool = { _ in false }
    ) async throws -> ESStatus {
        try await follow(
            sidecar: Self.esSidecar, socket: config.esSidecarSocket, start: start,
            request: { var r = Automate_Sidecar_Es_ESStatusRequest(); r.operationID = $0; return r },
            watch: ESSidecarService.watchStatus, cancel: ESSidecarService.cancel, update: update, done: done)
    }

    // MARK: the one way both are followed

    private func connect(_ socket: String, _ name: String) async throws -> RPCClient {
        do {
            return try await RPCClient.connect(socketPath: socket)
        } catch {
            throw KitError(.failed, "\(name) is unreachable at \(socket) (is it running? `automate status`): \(error)")
        }
    }

    private func follow<Request: SwiftProtobuf.Message, Status: SidecarOperationStatus>(
        sidecar: String, socket: String, start: @Sendable (RPCClient) async throws -> String,
        request: @Sendable (String) -> Request, watch: RPCServerStreamMethod<Request, Status>,
        cancel: RPCUnaryMethod<Request, Status>, update: @Sendable (Status) -> Void, done: @Sendable (Status) -> Bool
    ) async throws -> Status {
        let client = try await connect(socket, sidecar)
        defer { Task { await client.close() } }
        let op: String
        do { op = try await start(client) } catch {
            if Task.isCancelled { throw KitError(.cancelled, "cancelled before \(sidecar) started its work") }
            throw KitError(.failed, "\(sidecar): \(error)")
        }
        var last: Status?
        do {
            for try await s in client.stream(watch, request(op)) {
                last = s
                update(s)
                if s.outcome != .running && s.outcome != .completed { break }
                if s.outcome == .completed || done(s) { break }
            }
        } catch let e as RPCError where e.code == .notFound {
            throw KitError(.sidecarLost, "\(sidecar) lost operation \(op) (\(e.message)); the backup or restore cannot go on")
        } catch let e as RPCError where !Task.isCancelled {
            throw KitError(.sidecarLost, "\(sidecar) stopped answering while it worked on operation \(op) (did it exit? `automate status`): \(e)")
        } catch {
            if !Task.isCancelled { throw KitError(.failed, "\(sidecar): following operation \(op): \(error)") }
        }
        if Task.isCancelled {
            await Self.cancel(op, on: client, sidecar: sidecar, method: cancel, request: request(op))
            throw KitError(.cancelled, "cancelled while \(sidecar) was working (operation \(op) cancelled there too)")
        }
        guard let last else {
            throw KitError(.sidecarLost, "\(sidecar) ended the watch of operation \(op) without a status")
        }
        switch last.outcome {
        case .completed: return last
        case .running where done(last): return last
        case .running: throw KitError(.sidecarLost, "\(sidecar) ended the watch of operation \(op) before it finished")
        case .failed: throw KitError(.failed, "\(sidecar): \(last.failure)")
        case .cancelled: throw KitError(.cancelled, "\(sidecar) cancelled operation \(op)")
        }
    }

    /// Tells the sidecar to cancel `op` and waits (at most 15 s) for its answer, which comes once the
    /// operation's tools are gone. Runs in a task of its own: the caller is already cancelled.
    private static func cancel<Request: SwiftProtobuf.Message, Status: SidecarOperationStatus>(
        _ op: String, on client: RPCClient, sidecar: String, method: RPCUnaryMethod<Request, Status>, request: Request
    ) async {
        let call = Task {
            _ = try await client.call(method, request, timeout: .seconds(15))
        }
        _ = await call.result
    }
}

/// How a sidecar operation stands, whichever sidecar reports it.
enum SidecarOutcome: Sendable, Equatable { case running, completed, failed, cancelled }

/// A sidecar's status message, read the same way for both sidecars.
protocol SidecarOperationStatus: SwiftProtobuf.Message, Sendable {
    var outcome: SidecarOutcome { get }
    var failure: String { get }
}

extension Automate_Sidecar_Pg_PGStatus: SidecarOperationStatus {
    var outcome: SidecarOutcome {
        switch phase {
        case .completed: .completed
        case .failed: .failed
        case .cancelled: .cancelled
        default: .running
        }
    }
    var failure: String { error }
}

extension Automate_Sidecar_Es_ESStatus: SidecarOperationStatus {
    var outcome: SidecarOutcome {
        switch phase {
        case .completed: .completed
        case .failed: .failed
        case .cancelled: .cancelled
        default: .running
        }
    }
    var failure: String { error }
}
