import AutomateRPC
import Foundation
import SidecarProto

/// Calls into the pg and es sidecars on their sockets, following each operation to its end.
struct SidecarCalls: Sendable {
    let config: KitConfig

    typealias PGStatus = Automate_Sidecar_Pg_PGStatus
    typealias ESStatus = Automate_Sidecar_Es_ESStatus

    private func connect(_ socket: String, _ name: String) async throws -> RPCClient {
        do {
            return try await RPCClient.connect(socketPath: socket)
        } catch {
            throw KitError.failed("\(name) is unreachable at \(socket) (is it running? `automate status`): \(error)")
        }
    }

    /// Starts a pg-sidecar operation and follows it until it ends; `update` sees every status.
    func pgOperation(
        start: @Sendable (RPCClient) async throws -> String, update: @Sendable (PGStatus) -> Void
    ) async throws -> PGStatus {
        let client = try await connect(config.pgSidecarSocket, "pg-sidecar-service")
        defer { Task { await client.close() } }
        let op: String
        do { op = try await start(client) } catch { throw KitError.failed("pg-sidecar-service: \(error)") }
        var request = Automate_Sidecar_Pg_PGStatusRequest()
        request.operationID = op
        var last: PGStatus?
        do {
            for try await s in client.serverStream("WatchStatus", request, as: PGStatus.self) {
                last = s
                update(s)
            }
        } catch is CancellationError {
            throw KitError.cancelled("cancelled while pg-sidecar-service was working")
        } catch {
            throw KitError.failed("pg-sidecar-service: lost operation \(op): \(error)")
        }
        try Task.checkCancellation()
        guard let last, last.phase == .completed else {
            throw KitError.failed("pg-sidecar-service: \(last?.error ?? "operation \(op) ended without a status")")
        }
        return last
    }

    /// Starts an es-sidecar operation and polls it until `done` says so (or it fails).
    func esOperation(
        start: @Sendable (RPCClient) async throws -> String, update: @Sendable (ESStatus) -> Void,
        done: @Sendable (ESStatus) -> Bool
    ) async throws -> ESStatus {
        let client = try await connect(config.esSidecarSocket, "es-sidecar-service")
        defer { Task { await client.close() } }
        let op: String
        do { op = try await start(client) } catch { throw KitError.failed("es-sidecar-service: \(error)") }
        var request = Automate_Sidecar_Es_ESStatusRequest()
        request.operationID = op
        while true {
            let s: ESStatus
            do {
                s = try await client.unary("SnapshotStatus", request, as: ESStatus.self, timeout: .seconds(30))
            } catch {
                if Task.isCancelled { throw KitError.cancelled("cancelled while es-sidecar-service was working") }
                throw KitError.failed("es-sidecar-service: lost operation \(op): \(error)")
            }
            update(s)
            if s.phase == .failed { throw KitError.failed("es-sidecar-service: \(s.error)") }
            if done(s) { return s }
            do { try await Task.sleep(for: .milliseconds(200)) } catch {
                throw KitError.cancelled("cancelled while es-sidecar-service was working")
            }
        }
    }
}
