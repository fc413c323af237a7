import AutomateManifest
import BackupContract
import Foundation
import Logging

/// Runs one service: waits for its dependencies, runs its init hook, starts its process, checks its
/// health, restarts it with backoff after a crash, and stops it (stop signal to the process group, then
/// SIGKILL after the timeout, then the post-stop hook).
///
/// Every decision is ``RunnerStateMachine``'s: this actor feeds it each ``RunnerEvent`` and carries out
/// the ``RunnerAction``s it returns, in order and without suspending in between, so each transition is
/// atomic. Work that takes time (hooks, the spawn, a process's life, health checks, timers) runs in
/// tasks that report back as events.
public actor ServiceRunner {
    /// The service's name.
    public nonisolated let name: String
    /// How it is started.
    public nonisolated let context: ServiceContext

    private let logger: Logger
    private let emit: @Sendable (ServiceStatus, ServiceState, _ kind: String, _ message: String) -> Void
    private let awaitDependencies: @Sendable (_ service: String) async -> DependencyOutcome

    private var machine: RunnerStateMachine
    /// Callers of ``stop()`` waiting for the stop under way to complete.
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    /// The init hook while it runs (cancelling it kills the hook's process group).
    private var initHook: Task<Void, Never>?
    /// The next health check (cancelling it kills a running health-check hook).
    private var healthCheck: Task<Void, Never>?
    private var timers: [RunnerTimer: Task<Void, Never>] = [:]
    /// The sd_notify socket, bound at the first spawn, closed when the service comes to rest.
    private var notifySocket: NotifySocket?
    /// The restore this service is held down for: every spawn gets it in its environment until
    /// ``releaseHold()``, so a held service that crashes comes back held.
    private var hold: RestoreHold?
    /// Started without waiting for its dependencies (``start(hold:withoutDependencies:)``): holds for its
    /// restarts too, until it is stopped.
    private var ignoresDependencies = false

    /// - Parameters:
    ///   - emit: called on every change of state or health with the new status (and its state, typed).
    ///   - awaitDependencies: resolves once the named service's dependencies are healthy.
    public init(
        context: ServiceContext, logger: Logger,
        emit: @escaping @Sendable (ServiceStatus, ServiceState, String, String) -> Void,
        awaitDependencies: @escaping @Sendable (String) async -> DependencyOutcome
    ) {
        self.name = context.manifest.name
        self.context = context
        self.logger = logger
        self.emit = emit
        self.awaitDependencies = awaitDependencies
        self.machine = RunnerStateMachine(configuration: .init(manifest: context.manifest))
    }

    // MARK: control

    /// Starts the service unless it already runs; a `failed` or `exited` service starts afresh. A start
    /// while a stop is under way takes effect once the stop is complete.
    public func start() {
        deliver(.start)
    }

    /// Starts the service, held down for `hold`'s restore when given (its process gets
    /// `AUTOMATE_RESTORE_ID` and `AUTOMATE_RESTORE_BACKUP_ID`, see ``RestoreHold``, until
    /// ``releaseHold()``), and not waiting for its dependencies to be healthy (`withoutDependencies`;
    /// until it is stopped, its restarts do not wait either): a point-in-time recovery starts the
    /// pg-sidecar before the database server whose recovery reads WAL through it.
    public func start(hold: RestoreHold?, withoutDependencies: Bool) {
        if let hold { self.hold = hold }
        if withoutDependencies { ignoresDependencies = true }
        deliver(.start)
    }

    /// Forgets the restore hold: the next spawn (after a crash or a restart) is a normal one. The running
    /// process is not touched.
    public func releaseHold() {
        hold = nil
    }

    /// Prepares the service's data folder (owned by its user) and key file without starting it: a held
    /// service's data is restored before its first start.
    public func prepareDataDirectory() throws {
        for note in try ServiceFiles.prepare(context) { context.log.append(note, source: "supervisor") }
    }

    /// The restore the service is held down for, if any.
    public var currentHold: RestoreHold? { hold }

    /// Stops the service and returns once its process (or init hook) and post-stop hook are done. A stop
    /// that arrives while the process is being spawned signals the new process group as soon as it exists.
    public func stop() async {
        ignoresDependencies = false
        let actions = machine.handle(.stop, at: .now, date: Date())
        perform(actions)
        if actions.contains(.stopCompleted) { return }
        await withCheckedContinuation { stopWaiters.append($0) }
    }

    /// Stops, then starts again; the restart counter keeps counting.
    public func restart() async {
        await stop()
        start()
    }

    /// The current status.
    public func status() -> ServiceStatus {
        status(of: machine.snapshot)
    }

    /// Where the service is in its life.
    public var state: RunnerState { machine.state }

    // MARK: events and actions

    private func deliver(_ event: RunnerEvent) {
        perform(machine.handle(event, at: .now, date: Date()))
    }

    private func perform(_ actions: [RunnerAction]) {
        for action in actions {
            switch action {
            case .emit(let kind, let message, let snapshot):
                emit(status(of: snapshot), snapshot.state, kind.rawValue, message)
            case .log(let line, let isError):
                if isError { logger.error("\(name): \(line)") }
                context.log.append(line, source: "supervisor", priority: isError ? .error : .info)
            case .awaitDependencies(let attempt):
                let (wait, name, ignored) = (awaitDependencies, name, ignoresDependencies)
                report { .dependenciesResolved(ignored ? .ready : await wait(name), attempt: attempt) }
            case .runInitHook(let attempt):
                let (context, extra) = (context, hold?.environment ?? [:])
                initHook = report { .initFinished(attempt: attempt, error: await Self.initialize(context, extraEnvironment: extra)) }
            case .killInitHook:
                initHook?.cancel()
            case .spawn(let attempt):
                spawn(attempt: attempt)
            case .checkHealth(let pid, let delay):
                healthCheck?.cancel()
                let context = context
                let startedAt = machine.state.process?.startedInstant ?? .now
                healthCheck = report {
                    try? await Task.sleep(for: delay)
                    if Task.isCancelled { return nil }
                    let (result, detail) = await Self.checkHealth(context, startedAt: startedAt)
                    return Task.isCancelled ? nil : .healthChecked(pid: pid, result: result, detail: detail)
                }
            case .startTimer(let timer, let attempt, let deadline):
                timers[timer]?.cancel()
                timers[timer] = report {
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    return Task.isCancelled ? nil : .timerFired(timer, attempt: attempt)
                }
            case .cancelTimers:
                for timer in timers.values { timer.cancel() }
                timers.removeAll()
                healthCheck?.cancel()
                healthCheck = nil
            case .signalGroup(let pid, let signal):
                ChildProcess(pid: pid).signalGroup(signal)
            case .runPostStopHook(let attempt):
                let context = context
                report {
                    await Self.runPostStopHook(context)
                    return .postStopFinished(attempt: attempt)
                }
            case .closeNotifySocket:
                notifySocket?.close()
                notifySocket = nil
            case .stopCompleted:
                let waiters = stopWaiters
                stopWaiters.removeAll()
                for waiter in waiters { waiter.resume() }
            }
        }
    }

    /// Runs `work` in a task of its own and delivers the event it returns (nil: nothing to deliver).
    @discardableResult
    private nonisolated func report(_ work: @escaping @Sendable () async -> RunnerEvent?) -> Task<Void, Never> {
        Task {
            guard let event = await work() else { return }
            await self.deliver(event)
        }
    }

    /// Binds the notify socket, then spawns the process and follows it until it is gone.
    private func spawn(attempt: UInt64) {
        do {
            try bindNotifySocket()
        } catch {
            report { .spawnFinished(attempt: attempt, .failed("\(error)")) }
            return
        }
        launch(attempt: attempt, environment: hold?.environment ?? [:])
    }

    /// Reports the spawn, then (once the process has exited and its group is gone) its exit.
    private nonisolated func launch(attempt: UInt64, environment: [String: String]) {
        let context = context
        Task {
            let process: ServiceProcess
            do {
                process = try await ServiceProcess.spawn(context, extraEnvironment: environment)
            } catch {
                await self.deliver(.spawnFinished(attempt: attempt, .failed("\(error)")))
                return
            }
            await self.deliver(.spawnFinished(attempt: attempt, .spawned(process.child.pid)))
            let status = await process.waitUntilGone()
            await self.deliver(.processExited(pid: process.child.pid, status: status))
        }
    }

    private func status(of snapshot: RunnerSnapshot) -> ServiceStatus {
        var s = ServiceStatus()
        s.name = name
        s.state = snapshot.state.rawValue
        s.pid = snapshot.pid
        s.startedAtUnixMs = snapshot.startedAt.map { Int64($0.timeIntervalSince1970 * 1000) } ?? 0
        s.restarts = snapshot.restarts
        s.health = snapshot.health.rawValue
        s.healthMessage = snapshot.healthMessage
        s.lastExit = snapshot.lastExit?.description ?? ""
        s.message = snapshot.message
        s.kind = context.manifest.kind.rawValue
        s.healthCheckedAtUnixMs = snapshot.healthCheckedAt.map { Int64($0.timeIntervalSince1970 * 1000) } ?? 0
        s.dependsOn = context.manifest.dependsOn
        return s
    }

    // MARK: watchdog

    private func bindNotifySocket() throws {
        guard notifySocket == nil, let path = context.notifySocketPath else { return }
        notifySocket = try NotifySocket(path: path, user: context.user) { [weak self] fields in
            guard let self, fields["WATCHDOG"] == "1" else { return }
            Task { await self.deliver(.watchdogPinged) }
        }
    }

    // MARK: hooks and checks (no state: they run in tasks and report back)

    /// Prepares the data folder and runs the init hook; returns why the start cannot go on (nil: it can).
    /// `extraEnvironment`: a restore hold's variables (a point-in-time recovery's target is the init
    /// hook's to act on).
    private static func initialize(_ context: ServiceContext, extraEnvironment: [String: String]) async -> String? {
        do {
            for note in try ServiceFiles.prepare(context) { context.log.append(note, source: "supervisor") }
            try await runInitHook(context, extraEnvironment: extraEnvironment)
            return nil
        } catch {
            return "\(error)"
        }
    }

    private static func runInitHook(_ context: ServiceContext, extraEnvironment: [String: String]) async throws {
        guard context.hooks.path(of: "init") != nil else { return }
        if Task.isCancelled { throw SupervisorError(.hookFailed, "init hook not run: the service is being stopped") }
        let result = try await context.hooks.run(
            "init", timeout: context.manifest.hooks.initTimeout, environment: context.environment.merging(extraEnvironment) { _, extra in extra },
            user: context.user, workingDirectory: context.dataDirectory, log: context.log)
        if result.timedOut {
            throw SupervisorError(.hookFailed, "init hook timed out after \(context.manifest.hooks.initTimeout)")
        }
        guard let status = result.status, status.isSuccess else {
            let detail = result.lastLine.isEmpty ? "" : ": \(result.lastLine)"
            throw SupervisorError(.hookFailed, "init hook \(result.status?.description ?? "failed")\(detail)")
        }
    }

    private static func runPostStopHook(_ context: ServiceContext) async {
        guard context.hooks.path(of: "post-stop") != nil else { return }
        do {
            let result = try await context.hooks.run(
                "post-stop", timeout: context.manifest.hooks.postStopTimeout, environment: context.environment,
                user: context.user, workingDirectory: context.dataDirectory, log: context.log)
            if !(result.status?.isSuccess ?? false) {
                context.log.append(
                    "post-stop hook \(result.timedOut ? "timed out" : result.status?.description ?? "failed")",
                    source: "supervisor", priority: .error)
            }
        } catch {
            context.log.append("\(error)", source: "supervisor")
        }
    }

    /// How long a service with neither a health-check hook nor a socket must stay up before it counts
    /// as healthy (supervisord's `startsecs`): a process that dies at once is a failed start, not a
    /// healthy service that then crashed.
    static let settleTime: Duration = .milliseconds(500)

    /// Runs one health check: the manifest's hook, else a connection to the service's socket, else
    /// "the process runs" once it has stayed up for ``settleTime`` (capped by the start-up grace).
    private static func checkHealth(
        _ context: ServiceContext, startedAt: ContinuousClock.Instant
    ) async -> (HealthResult, String) {
        let spec = context.manifest.health
        if context.hooks.path(of: spec.hook) != nil {
            do {
                let run = try await context.hooks.run(
                    spec.hook, timeout: spec.timeout, environment: context.environment, user: context.user,
                    workingDirectory: context.dataDirectory, log: context.log)
                if run.timedOut { return (.unknown, "health check timed out after \(spec.timeout)") }
                if let code = run.exitCode { return (HealthResult(exitCode: code), run.lastLine) }
                return (.unknown, "health check \(run.status?.description ?? "failed")")
            } catch {
                return (.unknown, "\(error)")
            }
        }
        if let socketPath = context.socketPath {
            let accepting = UnixSocketProbe.accepts(path: socketPath)
            return accepting
                ? (.ok, "socket accepts connections")
                : (.critical, "socket \(socketPath) does not accept connections")
        }
        let settle = min(settleTime, spec.grace / 2)
        let uptime = ContinuousClock.now - startedAt
        guard uptime >= settle else {
            func ms(_ d: Duration) -> Int64 { d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000 }
            return (.unknown, "process running for \(ms(uptime)) ms, not yet \(ms(settle)) ms (no health check)")
        }
        return (.ok, "process running (no health check)")
    }
}
