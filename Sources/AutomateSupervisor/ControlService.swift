import AutomateManifest
import AutomateRPC
import BackupContract
import Foundation
import Logging

/// The supervisor's control service: what `automate status|restart|stop` and watchers talk to, on
/// `<home>/run/automate-supervisor.sock`.
public enum ControlService {
    public typealias StatusRequest = Automate_Supervisor_V1_StatusRequest
    public typealias StatusResponse = Automate_Supervisor_V1_StatusResponse
    public typealias ServiceRequest = Automate_Supervisor_V1_ServiceRequest
    public typealias ServiceResponse = Automate_Supervisor_V1_ServiceResponse
    public typealias ShutdownRequest = Automate_Supervisor_V1_ShutdownRequest
    public typealias ShutdownResponse = Automate_Supervisor_V1_ShutdownResponse
    public typealias WatchRequest = Automate_Supervisor_V1_WatchRequest
    public typealias ReloadRequest = Automate_Supervisor_V1_ReloadRequest
    public typealias ReloadResponse = Automate_Supervisor_V1_ReloadResponse
    public typealias RotateRequest = Automate_Supervisor_V1_RotateGatewayCredentialsRequest
    public typealias RotateResponse = Automate_Supervisor_V1_RotateGatewayCredentialsResponse

    /// Registers every method on `server`. `shutdown` is called (once) when a client asks the
    /// supervisor to stop; the reply goes out first.
    public static func register(
        on server: RPCServer, supervisor: Supervisor, home: AutomateHome,
        reload: @escaping @Sendable () async -> Result<Supervisor.ReloadSummary, Error>,
        rotateGateway: (@Sendable () async throws -> (restarted: [String], accessKeyID: String))? = nil,
        shutdown: @escaping @Sendable () -> Void
    ) {
        server.register(SupervisorService.rotateGatewayCredentials) { _, _ in
            guard let rotateGateway else { throw RPCError(.failedPrecondition, "this stack has no backup gateway") }
            let (restarted, id) = try await rotateGateway()
            var response = RotateResponse()
            response.restarted = restarted
            response.accessKeyID = id
            return response
        }
        server.register(SupervisorService.reload) { _, _ in
            switch await reload() {
            case .success(let summary):
                var response = ReloadResponse()
                response.restarted = summary.restarted
                response.started = summary.started
                response.stopped = summary.stopped
                return response
            case .failure(let error as ManifestErrors):
                throw RPCError(.invalidArgument, "invalid manifests, nothing changed:\n\(error)")
            case .failure(let error):
                throw RPCError(.failedPrecondition, "\(error)")
            }
        }
        registerServiceControl(on: server, supervisor: supervisor, home: home)
        server.register(SupervisorService.restartService) { request, _ in
            try await serviceCall { try await supervisor.restart(service: request.name) }
        }
        server.register(SupervisorService.shutdown) { _, _ in
            shutdown()
            var response = ShutdownResponse()
            response.supervisorPid = getpid()
            return response
        }
    }

    /// Registers what the orchestrator may call on its own socket (and the operator on the control
    /// socket): status, watch, start (with a restore hold), release a hold, stop.
    public static func registerServiceControl(on server: RPCServer, supervisor: Supervisor, home: AutomateHome) {
        server.register(SupervisorService.status) { request, _ in
            var response = StatusResponse()
            let all = await supervisor.status()
            for name in request.services where !all.contains(where: { $0.name == name }) {
                throw RPCError(.notFound, "no service named \"\(name)\"")
            }
            response.services = request.services.isEmpty ? all : all.filter { request.services.contains($0.name) }
            response.supervisorPid = getpid()
            response.supervisorStartedAtUnixMs = Int64(supervisor.startedAt.timeIntervalSince1970 * 1000)
            response.home = home.path
            response.supervisorRssBytes = ProcessMemory.residentBytes()
            return response
        }
        server.register(SupervisorService.startService) { request, _ in
            try await serviceCall {
                try await supervisor.start(service: request.name, hold: RestoreHold(request.hasHold ? request.hold : nil),
                                           manifest: request.manifest.isEmpty ? nil : request.manifest, manifestPath: request.manifestPath,
                                           withoutDependencies: request.withoutDependencies)
            }
        }
        server.register(SupervisorService.releaseHold) { request, _ in
            try await serviceCall { try await supervisor.releaseHold(service: request.name) }
        }
        server.register(SupervisorService.stopService) { request, _ in
            try await serviceCall { try await supervisor.stop(service: request.name) }
        }
        server.register(SupervisorService.watch) { request, writer, _ in
            for await event in await supervisor.events(includeCurrent: request.includeCurrent) {
                try await writer.send(event)
            }
        }
    }

    private static func serviceCall(_ body: () async throws -> ServiceStatus) async throws -> ServiceResponse {
        do {
            var response = ServiceResponse()
            response.status = try await body()
            return response
        } catch let error as SupervisorError where error.code == .unknownService {
            throw RPCError(.notFound, error.message)
        } catch let error as SupervisorError where error.code == .invalidManifests {
            throw RPCError(.invalidArgument, error.message)
        } catch let error as SupervisorError where error.code == .serviceBusy {
            throw RPCError(.failedPrecondition, error.message)
        }
    }
}
