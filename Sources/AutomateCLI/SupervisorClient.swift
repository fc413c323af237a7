import AutomateRPC
import AutomateSupervisor
import Foundation

/// The CLI's side of the supervisor's control socket.
struct SupervisorClient {
    let home: AutomateHome
    let rpc: RPCClient

    /// Connects, or explains that the supervisor is not running.
    static func connect(home: AutomateHome) async throws -> SupervisorClient {
        guard access(home.runDirectory, X_OK) == 0 || errno != EACCES else {
            throw CLIError("permission denied on \(home.runDirectory): run this as the user who started the stack (or root)")
        }
        do {
            return SupervisorClient(home: home, rpc: try await RPCClient.connect(socketPath: home.controlSocketPath))
        } catch {
            throw CLIError.notRunning(home.path)
        }
    }

    func status() async throws -> ControlService.StatusResponse {
        try await rpc.call(SupervisorService.status, ControlService.StatusRequest(), timeout: .seconds(30))
    }

    func restart(_ service: String) async throws -> ServiceStatus {
        var request = ControlService.ServiceRequest()
        request.name = service
        return try await rpc.call(SupervisorService.restartService, request).status
    }

    func start(_ service: String) async throws -> ServiceStatus {
        var request = ControlService.ServiceRequest()
        request.name = service
        return try await rpc.call(SupervisorService.startService, request).status
    }

    func shutdown() async throws -> Int32 {
        try await rpc.call(SupervisorService.shutdown, ControlService.ShutdownRequest(), timeout: .seconds(30)).supervisorPid
    }

    func watch(includeCurrent: Bool) -> AsyncThrowingStream<SupervisorEvent, Error> {
        var request = ControlService.WatchRequest()
        request.includeCurrent = includeCurrent
        return rpc.stream(SupervisorService.watch, request)
    }

    func close() async { await rpc.close() }
}

/// Translates RPC failures into the CLI's plain errors.
func explain(_ error: Error) -> CLIError {
    if let error = error as? CLIError { return error }
    if let error = error as? RPCError {
        switch error.code {
        case .notFound: return CLIError(error.message)
        case .unavailable: return CLIError("lost the connection to the supervisor (\(error.message)); check `automate status`")
        default: return CLIError("\(error.code): \(error.message)")
        }
    }
    return CLIError("\(error)")
}
