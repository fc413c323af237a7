import AutomateRPC
import AutomateSupervisor
import BackupContract
import Foundation

/// The deployment-service's line to the supervisor that runs the stack (`AUTOMATE_SUPERVISOR_SOCKET`):
/// a restore starts, holds, releases and stops services through it, and waits on its event stream for
/// each one to come up. Every call fails loudly: a restore never goes on past a service it could not
/// start or stop.
actor SupervisorLink {
    let socketPath: String
    private var client: RPCClient?
    /// When `client` last answered: the supervisor closes a connection that sent nothing for 30 s (its
    /// RPC idle timeout), and a restore can go longer than that between two calls (a large database).
    private var lastUsed = ContinuousClock.now
    /// Reused for at most this long after its last call; then a new connection is made.
    static let reuseWindow: Duration = .seconds(10)

    init(socketPath: String) {
        self.socketPath = socketPath
    }

    /// The link named by the deployment-service's environment.
    static func fromEnvironment(_ environment: [String: String]) throws -> SupervisorLink {
        guard let socket = environment["AUTOMATE_SUPERVISOR_SOCKET"], !socket.isEmpty else {
            throw RPCError(.failedPrecondition,
                "AUTOMATE_SUPERVISOR_SOCKET is not set: a restore relaunches the stack's services, so the deployment-service must be started by automate-supervisor")
        }
        return SupervisorLink(socketPath: socket)
    }

    private func connection() async throws -> RPCClient {
        if let client {
            if client.isActive && ContinuousClock.now - lastUsed < Self.reuseWindow { return client }
            await client.close()
            self.client = nil
        }
        do {
            let made = try await RPCClient.connect(socketPath: socketPath)
            client = made
            lastUsed = .now
            return made
        } catch {
            throw RPCError(.unavailable, "the supervisor is unreachable at \(socketPath): \(error)")
        }
    }

    private func serviceCall(
        _ method: RPCUnaryMethod<ControlService.ServiceRequest, ControlService.ServiceResponse>, _ name: String,
        hold: RestoreHold? = nil, launch: RestoreOrchestrator.Launch? = nil, withoutDependencies: Bool = false
    ) async throws -> ServiceStatus {
        var request = ControlService.ServiceRequest()
        request.name = name
        request.withoutDependencies = withoutDependencies
        if let hold {
            request.hold.restoreID = hold.restoreID
            request.hold.backupID = hold.backupID
            request.hold.recoveryTarget = hold.recoveryTarget
            request.hold.recoveryCluster = hold.recoveryCluster
        }
        if let launch {
            request.manifest = launch.manifest
            request.manifestPath = launch.path
        }
        do {
            return try await call(method, request, timeout: .seconds(180)).status
        } catch {
            throw RPCError(.unavailable, "the supervisor's \(method.name) of \(name) failed: \(error)")
        }
    }

    /// One call on the shared connection; a failure drops the connection (the next call reconnects: the
    /// supervisor may have closed it while idle).
    private func call<Request, Response>(_ method: RPCUnaryMethod<Request, Response>, _ request: Request, timeout: Duration) async throws -> Response {
        do {
            let answer = try await connection().call(method, request, timeout: timeout)
            lastUsed = .now
            return answer
        } catch {
            await client?.close()
            client = nil
            throw error
        }
    }

    /// The service's status now.
    func status(_ name: String) async throws -> ServiceStatus {
        var request = ControlService.StatusRequest()
        request.services = [name]
        guard let status = try await call(SupervisorService.status, request, timeout: .seconds(30)).services.first else {
            throw RPCError(.notFound, "the supervisor has no service \(name)")
        }
        return status
    }

    /// Starts the service, held down for `hold`'s restore when given, with `launch`'s manifest (a backup's)
    /// instead of its own when given; `withoutDependencies`: now, not once its dependencies are healthy.
    func start(_ name: String, hold: RestoreHold?, launch: RestoreOrchestrator.Launch? = nil, withoutDependencies: Bool = false) async throws {
        _ = try await serviceCall(SupervisorService.startService, name, hold: hold, launch: launch, withoutDependencies: withoutDependencies)
    }

    /// Lets the service's next start be a normal one (its short-term restore is done).
    func releaseHold(_ name: String) async throws {
        _ = try await serviceCall(SupervisorService.releaseHold, name)
    }

    /// Stops the service and checks it is down.
    func stop(_ name: String) async throws {
        let status = try await serviceCall(SupervisorService.stopService, name)
        guard Self.isDown(status.state) else {
            throw RPCError(.failedPrecondition, "\(name) did not stop (it is \(status.state): \(status.message))")
        }
    }

    /// True when a service in `state` runs no process.
    static func isDown(_ state: String) -> Bool {
        [ServiceState.stopped, .held, .failed, .exited].map(\.rawValue).contains(state)
    }

    /// Waits until the service, just started, runs and is healthy. Throws naming it when it fails or
    /// gives up, or when `timeout` passes first. A `failed` or `exited` state from before the start (the
    /// supervisor records a start a moment after it answered) is not taken for its outcome: only one
    /// that follows a state of this start (waiting, starting, backoff, unhealthy).
    func waitUntilRunning(_ name: String, timeout: Duration) async throws {
        var request = ControlService.WatchRequest()
        request.includeCurrent = true
        // A connection of its own: the stream lives until the service is up.
        let watcher: RPCClient
        do { watcher = try await RPCClient.connect(socketPath: socketPath) } catch {
            throw RPCError(.unavailable, "the supervisor is unreachable at \(socketPath): \(error)")
        }
        defer { Task { await watcher.close() } }
        var last = "no status yet"
        var started = false
        do {
            for try await event in watcher.stream(SupervisorService.watch, request, timeout: timeout)
            where event.service == name && event.hasStatus {
                let s = event.status
                last = "\(s.state)\(s.message.isEmpty ? "" : ": \(s.message)")"
                switch s.state {
                case ServiceState.running.rawValue: return
                case ServiceState.failed.rawValue, ServiceState.exited.rawValue:
                    guard started else { continue }
                    throw RPCError(.failedPrecondition, "\(name) did not come up: \(last)\(s.lastExit.isEmpty ? "" : " (\(s.lastExit))")")
                case ServiceState.waiting.rawValue, ServiceState.starting.rawValue, ServiceState.backoff.rawValue,
                     ServiceState.unhealthy.rawValue:
                    started = true
                default: continue
                }
            }
        } catch let e as RPCError where e.code == .deadlineExceeded {
            throw RPCError(.deadlineExceeded, "\(name) was not up after \(timeout) (\(last))")
        }
        throw RPCError(.unavailable, "the supervisor stopped while \(name) was starting (\(last))")
    }

    /// Closes the connection.
    func close() async {
        await client?.close()
        client = nil
    }
}
