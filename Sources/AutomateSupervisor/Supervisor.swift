import AutomateManifest
import BackupContract
import Foundation
import Logging

/// Owns every supervised service of one stack: starts them in dependency order (a dependent only once
/// what it needs is healthy), keeps their status, broadcasts their events, and stops them in reverse
/// order, one at a time.
public actor Supervisor {
    /// How the supervisor was set up.
    public struct Configuration: Sendable {
        public var layout: ServiceContext.Layout
        /// How long a service waits for its dependencies to become healthy before it is `failed`.
        public var dependencyTimeout: Duration = .seconds(300)
        public init(layout: ServiceContext.Layout) { self.layout = layout }
    }

    public nonisolated let configuration: Configuration
    /// The manifests in force (replaced by ``reload(manifests:access:)``).
    public private(set) var manifests: ManifestSet
    /// Each service's user and what it may reach (empty: all run as the supervisor's user).
    private var access: [String: ServiceAccess]
    /// The layout services are started with (its gateway key pair changes on rotation).
    private var layout: ServiceContext.Layout
    /// The time this supervisor started.
    public nonisolated let startedAt = Date()
    private let logger: Logger
    private var runners: [String: ServiceRunner] = [:]
    /// Each service as its runner last reported it: the wire status and its state, typed (dependency
    /// waits and readiness use the typed state; nothing parses the wire's string back).
    private var services: [String: (status: ServiceStatus, state: ServiceState)] = [:]
    /// Services started with a manifest given to ``start(service:hold:manifest:manifestPath:)`` (a backup's),
    /// with the stack's manifest each one replaced: a reload keeps the given one while the file is unchanged.
    private var adoptedOver: [String: ServiceManifest] = [:]
    private var subscribers: [UInt64: AsyncStream<SupervisorEvent>.Continuation] = [:]
    private var dependencyWaiters: [UInt64: DependencyWaiter] = [:]
    private var nextID: UInt64 = 0
    /// Changes from the runners, in the order each runner made them.
    private nonisolated let changes: AsyncStream<Change>.Continuation
    private var consumer: Task<Void, Never>?

    private struct Change: Sendable {
        let status: ServiceStatus
        let state: ServiceState
        let kind: String
        let message: String
    }

    private struct DependencyWaiter {
        let service: String
        let dependencies: [String]
        let continuation: CheckedContinuation<DependencyOutcome, Never>
    }

    /// Builds a runner per manifest; nothing starts yet.
    /// - Parameter access: the user each service runs as and what it may reach (absent: the supervisor's own user).
    public init(
        configuration: Configuration, manifests: ManifestSet, access: [String: ServiceAccess], logger: Logger
    ) async throws {
        self.configuration = configuration
        self.manifests = manifests
        self.access = access
        self.layout = configuration.layout
        self.logger = logger
        let (changeStream, changes) = AsyncStream<Change>.makeStream()
        self.changes = changes
        for manifest in manifests.services {
            let context = try ServiceContext.make(
                manifest: manifest, layout: configuration.layout, access: access[manifest.name])
            runners[manifest.name] = makeRunner(context: context)
            services[manifest.name] = (Self.initialStatus(manifest), .stopped)
        }
        self.consumer = Task { [weak self] in
            for await change in changeStream {
                await self?.record(status: change.status, state: change.state, kind: change.kind, message: change.message)
            }
        }
    }

    // MARK: whole stack

    /// Starts every service; each waits for its own dependencies. With `only`, starts those services and
    /// what they depend on; every other one is `held` until a ``start(service:hold:)`` names it (a restore
    /// brings the stack up this way, one service at a time as its data comes back).
    /// Names in `only` without a manifest are left out (``SupervisorDaemon`` refuses them up front).
    public func startAll(only: [String]? = nil) async {
        let launch = only.map { manifests.withDependencies(of: $0) } ?? manifests.startOrder
        let held = manifests.startOrder.filter { !launch.contains($0) }
        logger.info("starting \(launch.count) services: \(launch.joined(separator: ", "))\(held.isEmpty ? "" : "; holding \(held.joined(separator: ", "))")")
        for name in held {
            markHeld(name)
            do { try await runners[name]?.prepareDataDirectory() } catch {
                logger.error("\(name): \(error)")
            }
        }
        for name in launch {
            await runners[name]?.start()
        }
    }

    /// Shows a service that was not started as `held` (its runner stays at rest until it is started).
    private func markHeld(_ name: String) {
        guard var status = services[name]?.status else { return }
        status.state = ServiceState.held.rawValue
        status.message = "the restore starts it once its data is in"
        record(status: status, state: .held, kind: "state", message: "\(name) held: \(status.message)")
    }

    /// Stops every service in reverse dependency order, one at a time.
    public func stopAll() async {
        broadcast(kind: "supervisor", service: "", message: "stopping all services")
        for name in manifests.startOrder.reversed() {
            guard let runner = runners[name] else { continue }
            cancelDependencyWaits(of: name)
            await runner.stop()
        }
        broadcast(kind: "supervisor", service: "", message: "all services stopped")
    }

    /// Ends every event stream (watchers see the end of the stream), before the control socket closes.
    public func finishEvents() {
        for (_, subscriber) in subscribers { subscriber.finish() }
        subscribers.removeAll()
    }

    // MARK: one service

    /// Starts one service (after a stop or a failure, or a held one). With `hold`, the service starts
    /// held down for that restore (see ``RestoreHold``); its dependencies must already be up.
    ///
    /// With `manifest` (a manifest file's text, as a backup recorded it; `manifestPath` names it in errors),
    /// the service is started with that manifest, the home's config overlay applied, instead of the one it
    /// runs with: a restore relaunches each service as it was at backup time. Its settings are the given
    /// ones; what runs and as whom (command, user, kind) stay the stack's (see ``ManifestReplacement``). It
    /// must declare this service and depend on services of the stack; the service must be stopped or held.
    /// It stays in force until the service's file in the services folder changes and the stack reloads.
    public func start(service: String, hold: RestoreHold? = nil, manifest text: String? = nil, manifestPath: String = "",
                      withoutDependencies: Bool = false) async throws -> ServiceStatus {
        if let text { try adopt(service: service, manifest: text, path: manifestPath.isEmpty ? "\(service).toml" : manifestPath) }
        let runner = try runner(named: service)
        if let hold {
            let recovery = hold.recoveryTarget.isEmpty ? "" : ", recovering to \(hold.recoveryTarget)"
            logger.info("\(service): starting held down for restore \(hold.restoreID) of backup \(hold.backupID)\(recovery)")
        }
        if withoutDependencies { logger.info("\(service): starting without waiting for its dependencies (a restore asked so)") }
        await runner.start(hold: hold, withoutDependencies: withoutDependencies)
        return await runner.status()
    }

    /// Why a service's user cannot reach what its runner starts (see ``PathReach``), one line each.
    public func unreachableFiles() -> [String] {
        PathReach.problems(contexts: manifests.startOrder.compactMap { runners[$0]?.context }, dataDirectory: layout.home.dataDirectory)
    }

    /// Makes `text` the manifest `service` runs with (see ``start(service:hold:manifest:manifestPath:)``).
    private func adopt(service: String, manifest text: String, path: String) throws {
        guard let current = manifests.manifest(named: service) else {
            throw SupervisorError(.unknownService, "no service \"\(service)\" in this stack")
        }
        let replaced: (set: ManifestSet, manifest: ServiceManifest)
        do {
            replaced = try ManifestReplacement.replace(service, in: manifests, path: path, contents: text, home: layout.home)
        } catch {
            throw SupervisorError(.invalidManifests, "the manifest given for \(service) is not valid:\n\(error)")
        }
        let next = replaced.manifest
        var same = next
        same.sourcePath = current.sourcePath
        if same == current { return }  // the usual case: the backup's manifest is the stack's own
        let state = services[service]?.state
        guard state == nil || state == .stopped || state == .held || state == .failed else {
            throw SupervisorError(.serviceBusy, "\(service) is \(state!.rawValue); it must be stopped or held to start it with another manifest")
        }
        let context = try ServiceContext.make(manifest: next, layout: layout, access: access[service])
        runners[service] = makeRunner(context: context)
        adoptedOver[service] = adoptedOver[service] ?? current
        manifests = replaced.set
        var status = Self.initialStatus(next)
        if state == .held {
            status.state = ServiceState.held.rawValue
            status.message = "the restore starts it once its data is in"
        }
        services[service] = (status, state ?? .stopped)
        logger.info("\(service): runs with the manifest from \(path) from now on (until its manifest file changes)")
    }

    /// Forgets a service's restore hold (its restore's short-term part is done): its next start is normal.
    public func releaseHold(service: String) async throws -> ServiceStatus {
        let runner = try runner(named: service)
        await runner.releaseHold()
        return await runner.status()
    }

    /// Stops one service; its dependents keep running.
    public func stop(service: String) async throws -> ServiceStatus {
        let runner = try runner(named: service)
        cancelDependencyWaits(of: service)
        await runner.stop()
        return await runner.status()
    }

    /// Stops and starts one service.
    public func restart(service: String) async throws -> ServiceStatus {
        let runner = try runner(named: service)
        cancelDependencyWaits(of: service)
        await runner.restart()
        return await runner.status()
    }

    // MARK: reload

    /// What a reload changed.
    public struct ReloadSummary: Sendable, Equatable {
        public var restarted: [String] = []
        public var started: [String] = []
        public var stopped: [String] = []
        public var description: String {
            if restarted.isEmpty && started.isEmpty && stopped.isEmpty { return "no manifest changed" }
            var parts: [String] = []
            if !restarted.isEmpty { parts.append("restarted \(restarted.joined(separator: ", "))") }
            if !started.isEmpty { parts.append("started \(started.joined(separator: ", "))") }
            if !stopped.isEmpty { parts.append("stopped \(stopped.joined(separator: ", "))") }
            return parts.joined(separator: "; ")
        }
    }

    /// Applies new manifests: restarts only the services whose manifest changed, starts added ones and
    /// stops removed ones (removed and changed services stop in reverse dependency order first).
    /// A service started with a given manifest (a restore's) keeps it while its own file is as it was then.
    public func reload(manifests loaded: ManifestSet, access nextAccess: [String: ServiceAccess]) async throws -> ReloadSummary {
        var kept: [ServiceManifest] = []
        for (name, base) in adoptedOver {
            if loaded.manifest(named: name) == base, let given = manifests.manifest(named: name) { kept.append(given) } else { adoptedOver[name] = nil }
        }
        let next = loaded.replacing(kept)
        var summary = ReloadSummary()
        let oldOrder = manifests.startOrder
        var replacements: [String: ServiceRunner] = [:]
        for manifest in next.services {
            if let old = manifests.manifest(named: manifest.name), old == manifest, access[manifest.name] == nextAccess[manifest.name] {
                continue
            }
            let context = try ServiceContext.make(manifest: manifest, layout: layout, access: nextAccess[manifest.name])
            replacements[manifest.name] = makeRunner(context: context)
            if manifests.manifest(named: manifest.name) == nil { summary.started.append(manifest.name) }
            else { summary.restarted.append(manifest.name) }
        }
        summary.stopped = oldOrder.filter { next.manifest(named: $0) == nil }
        let toStop = Set(summary.stopped + summary.restarted)
        for name in oldOrder.reversed() where toStop.contains(name) {
            cancelDependencyWaits(of: name)
            await runners[name]?.stop()
        }
        for name in summary.stopped {
            runners.removeValue(forKey: name)
            services.removeValue(forKey: name)
        }
        manifests = next
        access = nextAccess
        for (name, runner) in replacements {
            runners[name] = runner
            services[name] = (Self.initialStatus(next.manifest(named: name)!), .stopped)
        }
        for name in next.startOrder where replacements[name] != nil {
            await runners[name]?.start()
        }
        broadcast(kind: "supervisor", service: "", message: "reloaded: \(summary.description)")
        return summary
    }

    /// Puts a new gateway key pair in force: the gateway and every service that may use it restart with
    /// it (in dependency order); nothing else is touched. Returns the restarted services.
    public func updateGateway(_ gateway: GatewayAccess) async throws -> [String] {
        layout.gateway = gateway
        let affected = manifests.startOrder.filter { name in
            guard let manifest = manifests.manifest(named: name) else { return false }
            return manifest.kind == .gateway || manifest.backup.gateway
        }
        for name in affected.reversed() {
            cancelDependencyWaits(of: name)
            await runners[name]?.stop()
        }
        for name in affected {
            guard let manifest = manifests.manifest(named: name) else { continue }
            let context = try ServiceContext.make(manifest: manifest, layout: layout, access: access[name])
            runners[name] = makeRunner(context: context)
            await runners[name]?.start()
        }
        broadcast(kind: "supervisor", service: "", message: "gateway credentials rotated; restarted \(affected.joined(separator: ", "))")
        return affected
    }

    /// A runner whose changes flow into this supervisor's ordered change stream.
    private nonisolated func makeRunner(context: ServiceContext) -> ServiceRunner {
        let changes = self.changes
        return ServiceRunner(
            context: context, logger: logger,
            emit: { status, state, kind, message in
                changes.yield(Change(status: status, state: state, kind: kind, message: message))
            },
            awaitDependencies: { [weak self] service in
                guard let self else { return .cancelled }
                return await self.waitForDependencies(of: service)
            })
    }

    private static func initialStatus(_ manifest: ServiceManifest) -> ServiceStatus {
        var initial = ServiceStatus()
        initial.name = manifest.name
        initial.state = ServiceState.stopped.rawValue
        initial.kind = manifest.kind.rawValue
        initial.health = HealthResult.none.rawValue
        initial.dependsOn = manifest.dependsOn
        return initial
    }

    /// How many services are healthy, of how many (held services are not counted: the stack is ready
    /// when what was started is).
    public func readiness() -> (healthy: Int, total: Int) {
        let healthy = services.values.filter(\.state.isReady).count
        return (healthy, services.values.filter { $0.state != .held }.count)
    }

    /// Answers as soon as the actor is free: the watchdog pings only when this returns, so a stuck
    /// supervisor stops pinging.
    public func heartbeat() {}

    // MARK: status and events

    /// Every service's status, in start order.
    public func status() -> [ServiceStatus] {
        manifests.startOrder.compactMap { services[$0]?.status }
    }

    /// A stream of every change from now on (and, if asked, one event per service first).
    public func events(includeCurrent: Bool) -> AsyncStream<SupervisorEvent> {
        let (stream, continuation) = AsyncStream<SupervisorEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        nextID += 1
        let id = nextID
        subscribers[id] = continuation
        if includeCurrent {
            for status in status() {
                continuation.yield(Self.event(kind: "state", service: status.name, status: status, message: status.message))
            }
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unsubscribe(id) }
        }
        return stream
    }

    private func unsubscribe(_ id: UInt64) {
        subscribers.removeValue(forKey: id)
    }

    private func record(status: ServiceStatus, state: ServiceState, kind: String, message: String) {
        // A runner replaced or removed by a reload may still report its last words: keep them out.
        if runners[status.name] != nil {
            services[status.name] = (status, state)
        }
        logger.info("\(message)")
        for (_, subscriber) in subscribers {
            subscriber.yield(Self.event(kind: kind, service: status.name, status: status, message: message))
        }
        resolveDependencyWaiters()
    }

    private func broadcast(kind: String, service: String, message: String) {
        logger.info("\(message)")
        for (_, subscriber) in subscribers {
            subscriber.yield(Self.event(kind: kind, service: service, status: nil, message: message))
        }
    }

    private static func event(kind: String, service: String, status: ServiceStatus?, message: String) -> SupervisorEvent {
        var event = SupervisorEvent()
        event.atUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        event.kind = kind
        event.service = service
        if let status { event.status = status }
        event.message = message
        return event
    }

    // MARK: dependencies

    /// Resolves when every dependency of `service` is healthy, one of them failed, or the deadline passed.
    func waitForDependencies(of service: String) async -> DependencyOutcome {
        let dependencies = manifests.manifest(named: service)?.dependsOn ?? []
        if let outcome = outcome(for: dependencies) { return outcome }
        nextID += 1
        let id = nextID
        let timeout = configuration.dependencyTimeout
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.expireDependencyWait(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            dependencyWaiters[id] = DependencyWaiter(service: service, dependencies: dependencies, continuation: continuation)
        }
    }

    private func outcome(for dependencies: [String]) -> DependencyOutcome? {
        for dependency in dependencies where services[dependency]?.state == .failed {
            return .failed(dependency)
        }
        let ready = dependencies.allSatisfy { services[$0]?.state.isReady ?? false }
        return ready ? .ready : nil
    }

    private func resolveDependencyWaiters() {
        for (id, waiter) in dependencyWaiters {
            if let outcome = outcome(for: waiter.dependencies) {
                dependencyWaiters.removeValue(forKey: id)
                waiter.continuation.resume(returning: outcome)
            }
        }
    }

    private func expireDependencyWait(_ id: UInt64) {
        guard let waiter = dependencyWaiters.removeValue(forKey: id) else { return }
        let pending = waiter.dependencies.filter { !(services[$0]?.state.isReady ?? false) }
        waiter.continuation.resume(returning: .timedOut(pending))
    }

    private func cancelDependencyWaits(of service: String) {
        for (id, waiter) in dependencyWaiters where waiter.service == service {
            dependencyWaiters.removeValue(forKey: id)
            waiter.continuation.resume(returning: .cancelled)
        }
    }

    private func runner(named name: String) throws -> ServiceRunner {
        guard let runner = runners[name] else {
            let known = manifests.services.map(\.name).joined(separator: ", ")
            throw SupervisorError(.unknownService, "no service named \"\(name)\" (known: \(known))")
        }
        return runner
    }
}
