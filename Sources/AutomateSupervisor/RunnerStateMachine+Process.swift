import AutomateManifest
import Foundation

/// The start, the life and the end of one attempt.
extension RunnerStateMachine {
    // MARK: starting

    /// The dependency wait ended: start, or give up when a dependency failed or never got healthy.
    public mutating func dependenciesResolved(_ outcome: DependencyOutcome, attempt: UInt64) -> [RunnerAction] {
        guard attempt == self.attempt, case .waiting = state else { return [] }
        switch outcome {
        case .ready:
            return beginInit()
        case .cancelled:
            // Called off by the supervisor, which stops this service next.
            return []
        case .failed(let dependency):
            let reason = "dependency \(dependency) failed"
            return rest(.failed(reason: reason), reason)
        case .timedOut(let names):
            let reason = "dependencies not healthy in time: \(names.joined(separator: ", "))"
            return rest(.failed(reason: reason), reason)
        }
    }

    /// The init hook ended: spawn, or count a failed start (or finish a stop that killed the hook).
    public mutating func initFinished(attempt: UInt64, error: String?) -> [RunnerAction] {
        guard attempt == self.attempt, case .initializing(let stop) = state else { return [] }
        if let stop {
            let note: [RunnerAction] = error.map { [.log("\($0) (stopped during its init hook)", isError: false)] } ?? []
            return note + cleanUp(Ending(exit: nil, description: "stopped during its init hook"), stop: stop, kind: .state)
        }
        if let error {
            lastExit = nil
            return [.log(error, isError: true)] + cleanUp(Ending(exit: nil, description: error), stop: nil, kind: .state)
        }
        state = .spawning(stop: nil)
        return [.spawn(attempt: attempt)]
    }

    /// The spawn returned. A stop that arrived meanwhile signals the new group at once.
    public mutating func spawnFinished(
        attempt: UInt64, _ outcome: SpawnOutcome, at now: ContinuousClock.Instant, date: Date
    ) -> [RunnerAction] {
        guard attempt == self.attempt, case .spawning(let stop) = state else {
            // Nothing waits for this process (cannot happen: only this report leaves `spawning`): it must not live.
            if case .spawned(let pid) = outcome { return [.signalGroup(pid: pid, signal: SIGKILL)] }
            return []
        }
        switch outcome {
        case .failed(let error):
            lastExit = nil
            return [.log(error, isError: true)] + cleanUp(Ending(exit: nil, description: error), stop: stop, kind: .state)
        case .spawned(let pid):
            let process = RunningProcess(pid: pid, startedAt: date, startedInstant: now, nextCheck: Self.firstCheckDelay)
            lastStartedAt = date
            healthMessage = ""
            var actions: [RunnerAction] = [.log("started \(configuration.commandLine) as pid \(pid)", isError: false)]
            if let stop {
                return actions + terminate(process, .requested(stop), at: now)
            }
            let health = configuration.health
            actions.append(enter(.starting(process), "started as pid \(pid)"))
            actions.append(.checkHealth(pid: pid, after: Self.firstCheckDelay))
            actions.append(.startTimer(.grace, attempt: attempt, at: now + health.grace))
            if let interval = health.watchdog {
                actions.append(.startTimer(.watchdog, attempt: attempt, at: now + max(interval, health.grace)))
            }
            return actions
        }
    }

    // MARK: running

    /// A health check answered: `starting`/`unhealthy` and healthy → `running`; `running` and not
    /// healthy → `unhealthy`; otherwise a change of health is broadcast. Schedules the next check.
    public mutating func healthChecked(pid: pid_t, result: HealthResult, detail: String, date: Date) -> [RunnerAction] {
        guard var process = state.process, process.pid == pid else { return [] }
        let interval = configuration.health.interval
        let changed = result != process.health
        process.health = result
        process.nextCheck = interval
        var actions: [RunnerAction] = []
        switch state {
        case .stopping:
            return []
        case .starting where result.isHealthy, .unhealthy where result.isHealthy:
            recordHealth(detail, date)
            actions.append(enter(.running(process), "healthy"))
        case .running where !result.isHealthy:
            recordHealth(detail, date)
            actions.append(enter(.unhealthy(process), "health \(result.rawValue): \(detail)"))
        case .starting, .running, .unhealthy:
            recordHealth(detail, date)
            if case .starting(let previous) = state { process.nextCheck = min(previous.nextCheck * 2, interval) }
            state = state.replacingProcess(with: process)
            if changed {
                actions.append(.emit(.health, message: "\(configuration.name) health \(result.rawValue): \(detail)", snapshot))
            }
        default:
            return []
        }
        actions.append(.checkHealth(pid: pid, after: process.nextCheck))
        return actions
    }

    private mutating func recordHealth(_ detail: String, _ date: Date) {
        healthMessage = detail
        healthCheckedAt = date
    }

    /// The service sent `WATCHDOG=1`.
    public mutating func watchdogPinged(at now: ContinuousClock.Instant) -> [RunnerAction] {
        guard var process = state.process else { return [] }
        if case .stopping = state { return [] }
        process.lastWatchdogPing = now
        state = state.replacingProcess(with: process)
        return []
    }

    /// A timer fired: the start-up grace is over, the watchdog is due, the stop timeout is over, or the
    /// restart delay is over.
    public mutating func timerFired(_ timer: RunnerTimer, attempt: UInt64, at now: ContinuousClock.Instant) -> [RunnerAction] {
        guard attempt == self.attempt else { return [] }
        let health = configuration.health
        switch (timer, state) {
        case (.grace, .starting(let process)):
            let reason = "not healthy within its start-up grace of \(health.grace)"
            return [.log(reason, isError: false)] + terminate(process, .killed(reason: reason), at: now)
        case (.watchdog, .starting(let process)), (.watchdog, .running(let process)), (.watchdog, .unhealthy(let process)):
            guard let interval = health.watchdog else { return [] }
            let deadline = process.lastWatchdogPing.map { $0 + interval }
                ?? process.startedInstant + max(interval, health.grace)
            guard now >= deadline else { return [.startTimer(.watchdog, attempt: attempt, at: deadline)] }
            let reason = process.lastWatchdogPing == nil
                ? "watchdog: no WATCHDOG=1 within its start-up grace"
                : "watchdog: no WATCHDOG=1 for \(interval)"
            return [.log(reason, isError: false)] + terminate(process, .killed(reason: reason), at: now)
        case (.kill, .stopping(let process, _, _)):
            return [
                .log("still running after \(configuration.stop.timeout): SIGKILL", isError: false),
                .signalGroup(pid: process.pid, signal: SIGKILL),
            ]
        case (.backoff, .backoff(let until)):
            guard now >= until else { return [.startTimer(.backoff, attempt: attempt, at: until)] }
            return beginAttempt()
        default:
            return []
        }
    }

    // MARK: ending

    /// The process exited: the post-stop hook runs next.
    public mutating func processExited(pid: pid_t, status: ExitStatus, at now: ContinuousClock.Instant) -> [RunnerAction] {
        guard let process = state.process, process.pid == pid else { return [] }
        let uptime = now - process.startedInstant
        let ending: Ending
        let stop: StopRequest?
        switch state {
        case .stopping(_, .requested(let request), _):
            ending = Ending(exit: status, description: "\(status)", uptime: uptime)
            stop = request
        case .stopping(_, .killed(let reason), _):
            ending = Ending(exit: status, description: "\(reason); \(status)", killedBySupervisor: true, uptime: uptime)
            stop = nil
        default:
            ending = Ending(exit: status, description: "\(status)", uptime: uptime)
            stop = nil
        }
        lastExit = status
        return [.cancelTimers, .log("process \(pid) \(ending.description)", isError: false)]
            + cleanUp(ending, stop: stop, kind: .exit)
    }

    /// The post-stop hook ended: a stop ends in `stopped`; otherwise the restart policy decides between
    /// `exited`, `failed` (crash loop) and `backoff`.
    public mutating func postStopFinished(attempt: UInt64, at now: ContinuousClock.Instant) -> [RunnerAction] {
        guard attempt == self.attempt, case .cleaningUp(let ending, let stop) = state else { return [] }
        if let stop { return finishStop(stop) }
        let policy = configuration.restart.policy
        let clean = (ending.exit?.isSuccess ?? false) && !ending.killedBySupervisor
        if policy == .never || (policy == .onFailure && clean) {
            let what = ending.exit.map { "\($0)" } ?? ending.description
            return rest(.exited(ending.exit), "\(what); restart policy \(policy.rawValue)")
        }
        switch backoff.record(endAt: now, uptime: ending.uptime) {
        case .crashLoop(let count, let window):
            let reason = "crash loop: restarted \(count) times within \(window); last: \(ending.description)"
            return rest(.failed(reason: reason), reason)
        case .restart(let delay):
            restarts += 1
            let until = now + delay
            let seconds = String(format: "%.2f", delay.seconds)
            return [
                enter(.backoff(until: until), "restarting in \(seconds)s after: \(ending.description)"),
                .startTimer(.backoff, attempt: attempt, at: until),
            ]
        }
    }
}

extension RunnerState {
    /// The same state with its process's data replaced (for the states that have a process).
    func replacingProcess(with process: RunningProcess) -> RunnerState {
        switch self {
        case .starting: .starting(process)
        case .running: .running(process)
        case .unhealthy: .unhealthy(process)
        case .stopping(_, let termination, let since): .stopping(process, termination, since: since)
        default: self
        }
    }
}
