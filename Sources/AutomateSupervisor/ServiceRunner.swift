import AutomateManifest
import Foundation
import Logging

/// What waiting for a service's dependencies came to.
public enum DependencyOutcome: Sendable, Equatable {
    /// Every dependency is healthy.
    case ready
    /// A dependency gave up (`failed`): this one cannot start.
    case failed(String)
    /// These were still not healthy at the deadline.
    case timedOut([String])
    /// The wait was called off (the service is being stopped).
    case cancelled
}

/// Runs one service: waits for its dependencies, runs its init hook, starts its process, checks its
/// health, restarts it with backoff after a crash, and stops it (stop signal to the process group, then
/// SIGKILL after the timeout, then the post-stop hook).
public actor ServiceRunner {
    /// The service's name.
    public nonisolated let name: String
    /// How it is started.
    public nonisolated let context: ServiceContext

    private let logger: Logger
    private let emit: @Sendable (ServiceStatus, _ kind: String, _ message: String) -> Void
    private let awaitDependencies: @Sendable (_ service: String) async -> DependencyOutcome

    private var state: ServiceState = .stopped
    private var health: HealthResult = .none
    private var healthMessage = ""
    private var healthCheckedAt: Date?
    private var process: ChildProcess?
    private var startedAt: Date?
    private var startedInstant: ContinuousClock.Instant?
    private var restarts: UInt32 = 0
    private var lastExit: ExitStatus?
    private var message = ""
    private var desiredUp = false
    private var loop: Task<Void, Never>?
    private var backoff: RestartBackoff
    private var backoffWaiter: (token: UInt64, continuation: CheckedContinuation<Void, Never>)?
    private var nextToken: UInt64 = 0
    private var healthTask: Task<Void, Never>?
    private var endReason: String?
    private var notifySocket: NotifySocket?
    private var lastWatchdogPing: ContinuousClock.Instant?

    /// - Parameters:
    ///   - emit: called on every change of state or health with the new status.
    ///   - awaitDependencies: resolves once the named service's dependencies are healthy.
    public init(
        context: ServiceContext, logger: Logger,
        emit: @escaping @Sendable (ServiceStatus, String, String) -> Void,
        awaitDependencies: @escaping @Sendable (String) async -> DependencyOutcome
    ) {
        self.name = context.manifest.name
        self.context = context
        self.logger = logger
        self.emit = emit
        self.awaitDependencies = awaitDependencies
        self.backoff = RestartBackoff(spec: context.manifest.restart)
    }

    // MARK: control

    /// Starts the service unless it already runs; a `failed` or `exited` service starts afresh.
    public func start() {
        desiredUp = true
        guard loop == nil else { return }
        backoff.reset()
        loop = Task { await self.runLoop() }
    }

    /// Stops the service and waits until its process and post-stop hook are done.
    public func stop() async {
        desiredUp = false
        wakeBackoff()
        if let process {
            transition(.stopping, message: "stopping (\(context.manifest.stop.signalName))")
            await terminate(process, reason: "stop requested")
        }
        await loop?.value
        loop = nil
    }

    /// Stops, then starts again; the restart counter keeps counting.
    public func restart() async {
        await stop()
        start()
    }

    /// The current status.
    public func status() -> ServiceStatus {
        var s = ServiceStatus()
        s.name = name
        s.state = state.rawValue
        s.pid = process?.pid ?? 0
        s.startedAtUnixMs = startedAt.map { Int64($0.timeIntervalSince1970 * 1000) } ?? 0
        s.restarts = restarts
        s.health = health.rawValue
        s.healthMessage = healthMessage
        s.lastExit = lastExit?.description ?? ""
        s.message = message
        s.kind = context.manifest.kind.rawValue
        s.healthCheckedAtUnixMs = healthCheckedAt.map { Int64($0.timeIntervalSince1970 * 1000) } ?? 0
        s.dependsOn = context.manifest.dependsOn
        return s
    }

    // MARK: the life of the service

    private func runLoop() async {
        while desiredUp {
            if !context.manifest.dependsOn.isEmpty {
                transition(.waiting, message: "waiting for \(context.manifest.dependsOn.joined(separator: ", "))")
                switch await awaitDependencies(name) {
                case .ready: break
                case .cancelled: continue
                case .failed(let dependency):
                    transition(.failed, message: "dependency \(dependency) failed")
                    desiredUp = false
                    continue
                case .timedOut(let names):
                    transition(.failed, message: "dependencies not healthy in time: \(names.joined(separator: ", "))")
                    desiredUp = false
                    continue
                }
                guard desiredUp else { continue }
            }
            transition(.starting, message: "starting")
            do {
                try prepareDataDirectory()
                try await runInitHook()
                guard desiredUp else { continue }
                try await runProcessOnce()
            } catch {
                logger.error("\(name): \(error)")
                context.log.append("\(error)", source: "supervisor", priority: .error)
                message = "\(error)"
                lastExit = nil
            }
            await runPostStopHook()
            guard desiredUp else { break }
            if !(await scheduleRestart()) { break }
        }
        notifySocket?.close()
        notifySocket = nil
        if state != .failed && state != .exited {
            transition(.stopped, message: "stopped")
        }
    }

    /// Starts the process and returns once it has ended.
    private func runProcessOnce() async throws {
        let manifest = context.manifest
        let (outRead, outWrite) = try OutputCapture.makePipe()
        let (errRead, errWrite) = try OutputCapture.makePipe()
        let log = context.log
        let outDone = try await OutputCapture.capture(readEnd: outRead) { log.append($0, source: "stdout") }
        let errDone = try await OutputCapture.capture(readEnd: errRead) { log.append($0, source: "stderr") }
        var options = ChildProcess.Options(
            executable: manifest.command[0], arguments: Array(manifest.command.dropFirst()),
            environment: context.environment)
        options.standardOutput = outWrite
        options.standardError = errWrite
        options.user = context.user
        options.workingDirectory = manifest.workingDirectory ?? context.dataDirectory
        let child: ChildProcess
        do {
            try await bindNotifySocket()
            child = try ChildProcess.spawn(options)
        } catch {
            close(outWrite)
            close(errWrite)
            throw error
        }
        close(outWrite)
        close(errWrite)
        process = child
        lastWatchdogPing = nil
        startedAt = Date()
        startedInstant = .now
        endReason = nil
        health = .none
        healthMessage = ""
        log.append("started \(manifest.command.joined(separator: " ")) as pid \(child.pid)", source: "supervisor")
        transition(.starting, message: "started as pid \(child.pid)")
        startHealthChecks(for: child)
        let watchdogTask = startWatchdog(for: child)

        let status = await child.waitForExit()
        watchdogTask?.cancel()
        healthTask?.cancel()
        healthTask = nil
        child.forget()
        process = nil
        lastExit = status
        // Let the pipes drain (the group may still hold them; the capture ends when they close).
        _ = await EventLoopFutureBox(outDone).completes(within: .seconds(1))
        _ = await EventLoopFutureBox(errDone).completes(within: .seconds(1))
        let reason = endReason.map { "\($0); \(status)" } ?? "\(status)"
        log.append("process \(child.pid) \(reason)", source: "supervisor")
        message = reason
        state = desiredUp ? .backoff : .stopping
        health = .none
        emitChange(kind: "exit", message: "\(name) \(reason)")
    }

    /// Decides whether and when to start again; waits out the delay. False: stay down.
    private func scheduleRestart() async -> Bool {
        let policy = context.manifest.restart.policy
        let succeeded = lastExit?.isSuccess ?? false
        if policy == .never || (policy == .onFailure && succeeded && endReason == nil) {
            transition(.exited, message: lastExit.map { "\($0); restart policy \(policy.rawValue)" } ?? "ended")
            desiredUp = false
            return false
        }
        let uptime = startedInstant.map { ContinuousClock.now - $0 } ?? .zero
        switch backoff.record(endAt: .now, uptime: uptime) {
        case .crashLoop(let count, let window):
            transition(.failed, message: "crash loop: restarted \(count) times within \(window); last: \(message)")
            desiredUp = false
            return false
        case .restart(let delay):
            restarts += 1
            let seconds = String(format: "%.2f", delay.seconds)
            transition(.backoff, message: "restarting in \(seconds)s after: \(message)")
            await waitBackoff(delay)
            return desiredUp
        }
    }

    // MARK: hooks

    private func prepareDataDirectory() throws {
        let path = context.dataDirectory
        var info = stat()
        if stat(path, &info) != 0 {
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
                throw SupervisorError(.filesystem, "cannot create \(path): \(String(cString: strerror(errno)))")
            }
            if let user = context.user, geteuid() == 0 {
                _ = chown(path, user.uid, user.gid)
            }
        }
    }

    private func runInitHook() async throws {
        guard context.hooks.path(of: "init") != nil else { return }
        let result = try await context.hooks.run(
            "init", timeout: context.manifest.hooks.initTimeout, environment: context.environment,
            user: context.user, workingDirectory: context.dataDirectory, log: context.log)
        if result.timedOut {
            throw SupervisorError(.hookFailed, "init hook timed out after \(context.manifest.hooks.initTimeout)")
        }
        guard let status = result.status, status.isSuccess else {
            let detail = result.lastLine.isEmpty ? "" : ": \(result.lastLine)"
            throw SupervisorError(.hookFailed, "init hook \(result.status?.description ?? "failed")\(detail)")
        }
    }

    private func runPostStopHook() async {
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

    // MARK: health

    private func startHealthChecks(for child: ChildProcess) {
        let spec = context.manifest.health
        healthTask = Task { [weak self] in
            // Quick checks while starting (readiness), then the manifest's interval.
            var delay: Duration = .milliseconds(20)
            while !Task.isCancelled {
                try? await Task.sleep(for: delay)
                guard let self, !Task.isCancelled else { return }
                let healthy = await self.checkHealthOnce(child: child)
                if Task.isCancelled { return }
                let starting = await self.isStarting()
                if healthy || !starting {
                    delay = spec.interval
                } else {
                    delay = min(delay * 2, spec.interval)
                    if await self.graceExpired() {
                        await self.failStart(child: child)
                        return
                    }
                }
            }
        }
    }

    private func isStarting() -> Bool { state == .starting }

    private func graceExpired() -> Bool {
        guard let startedInstant else { return false }
        return ContinuousClock.now - startedInstant > context.manifest.health.grace
    }

    private func failStart(child: ChildProcess) async {
        guard process?.pid == child.pid else { return }
        endReason = "not healthy within its start-up grace of \(context.manifest.health.grace)"
        context.log.append(endReason!, source: "supervisor")
        await terminate(child, reason: endReason!)
    }

    /// Runs one check; returns true when the service is healthy.
    private func checkHealthOnce(child: ChildProcess) async -> Bool {
        let spec = context.manifest.health
        let result: HealthResult
        let detail: String
        if context.hooks.path(of: spec.hook) != nil {
            do {
                let run = try await context.hooks.run(
                    spec.hook, timeout: spec.timeout, environment: context.environment, user: context.user,
                    workingDirectory: context.dataDirectory, log: context.log)
                if run.timedOut {
                    result = .unknown
                    detail = "health check timed out after \(spec.timeout)"
                } else if let code = run.exitCode {
                    result = HealthResult(exitCode: code)
                    detail = run.lastLine
                } else {
                    result = .unknown
                    detail = "health check \(run.status?.description ?? "failed")"
                }
            } catch {
                result = .unknown
                detail = "\(error)"
            }
        } else if let socketPath = context.socketPath {
            let accepting = UnixSocketProbe.accepts(path: socketPath)
            result = accepting ? .ok : .critical
            detail = accepting ? "socket accepts connections" : "socket \(socketPath) does not accept connections"
        } else {
            result = .ok
            detail = "process running (no health check)"
        }
        guard process?.pid == child.pid else { return false }
        record(health: result, detail: detail)
        return result.isHealthy
    }

    private func record(health result: HealthResult, detail: String) {
        let changed = result != health
        health = result
        healthMessage = detail
        healthCheckedAt = Date()
        switch (state, result.isHealthy) {
        case (.starting, true), (.unhealthy, true):
            transition(.running, message: "healthy")
        case (.running, false):
            transition(.unhealthy, message: "health \(result.rawValue): \(detail)")
        default:
            if changed { emitChange(kind: "health", message: "\(name) health \(result.rawValue): \(detail)") }
        }
    }

    // MARK: watchdog

    private func bindNotifySocket() async throws {
        guard notifySocket == nil, let path = context.notifySocketPath else { return }
        notifySocket = try NotifySocket(path: path, user: context.user) { [weak self] fields in
            guard let self else { return }
            Task { await self.notified(fields) }
        }
    }

    private func notified(_ fields: [String: String]) {
        if fields["WATCHDOG"] == "1" { lastWatchdogPing = .now }
    }

    /// Kills and restarts the service when it stops sending `WATCHDOG=1` within its watchdog interval
    /// (counted from its start-up grace until the first ping).
    private func startWatchdog(for child: ChildProcess) -> Task<Void, Never>? {
        guard let interval = context.manifest.health.watchdog else { return nil }
        return Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval / 4)
                guard let self, !Task.isCancelled else { return }
                if await self.watchdogExpired(interval: interval) {
                    await self.failWatchdog(child: child, interval: interval)
                    return
                }
            }
        }
    }

    private func watchdogExpired(interval: Duration) -> Bool {
        guard let startedInstant else { return false }
        let deadline = lastWatchdogPing.map { $0 + interval } ?? (startedInstant + max(interval, context.manifest.health.grace))
        return ContinuousClock.now > deadline
    }

    private func failWatchdog(child: ChildProcess, interval: Duration) async {
        guard process?.pid == child.pid else { return }
        endReason = lastWatchdogPing == nil
            ? "watchdog: no WATCHDOG=1 within its start-up grace"
            : "watchdog: no WATCHDOG=1 for \(interval)"
        context.log.append(endReason!, source: "supervisor")
        await terminate(child, reason: endReason!)
    }

    // MARK: stopping

    /// Stop signal to the process group, SIGKILL after the stop timeout; returns once it has exited.
    private func terminate(_ child: ChildProcess, reason: String) async {
        let stop = context.manifest.stop
        context.log.append("sending \(stop.signalName) to process group \(child.pid) (\(reason))", source: "supervisor")
        child.signalGroup(stop.signal)
        if await child.waitForExit(timeout: stop.timeout) == nil {
            context.log.append("still running after \(stop.timeout): SIGKILL", source: "supervisor")
            child.signalGroup(SIGKILL)
            _ = await child.waitForExit()
        }
        // Whatever else is left in the group goes too.
        child.signalGroup(SIGKILL)
    }

    private func waitBackoff(_ delay: Duration) async {
        nextToken += 1
        let token = nextToken
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            backoffWaiter = (token, continuation)
            Task { [weak self] in
                try? await Task.sleep(for: delay)
                await self?.wakeBackoff(token: token)
            }
        }
    }

    private func wakeBackoff(token: UInt64? = nil) {
        guard let waiter = backoffWaiter, token == nil || waiter.token == token else { return }
        backoffWaiter = nil
        waiter.continuation.resume()
    }

    // MARK: events

    private func transition(_ next: ServiceState, message: String) {
        state = next
        self.message = message
        if next != .running && next != .unhealthy && next != .starting { health = next == .backoff ? health : .none }
        emitChange(kind: "state", message: "\(name) \(next.rawValue): \(message)")
    }

    private func emitChange(kind: String, message: String) {
        emit(status(), kind, message)
    }
}
