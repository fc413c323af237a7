import AutomateManifest
import Foundation

/// The life of one supervised service as a value: every ``RunnerEvent`` is one method that switches
/// on the current ``RunnerState``, moves to the next one and returns the ``RunnerAction``s to take
/// (``ServiceRunner`` takes them). No I/O, no processes, no clock of its own: the caller passes the
/// time, so every transition can be checked without starting anything.
///
/// - A start goes `waiting` (when it has dependencies), `initializing` (init hook), `spawning`,
///   `starting` (health checked every 20 ms, doubling up to the interval), `running`/`unhealthy`.
/// - An end that nobody asked for (a crash, the start-up grace or the watchdog running out) runs the
///   post-stop hook, then the restart policy decides: `exited`, `failed` (crash loop) or `backoff`.
/// - A stop is honoured in every state: a pending stop is kept in the state while the init hook is
///   being killed or the spawn is under way, and the new process group is signalled the moment the
///   spawn returns; a running group gets the stop signal, SIGKILL after the stop timeout; the
///   post-stop hook runs; then `stopped`.
/// - Reports of an earlier attempt (a late timer, a stale health check) are ignored: each carries the
///   attempt or the pid it belongs to.
public struct RunnerStateMachine: Sendable {
    /// What the machine needs to know of the service's manifest.
    public struct Configuration: Sendable, Equatable {
        /// The service's name (it starts every broadcast message).
        public var name: String
        /// The command, as logged when it starts.
        public var commandLine: String
        /// The services it waits for.
        public var dependsOn: [String]
        public var health: HealthCheckSpec
        public var restart: RestartSpec
        public var stop: StopSpec

        public init(
            name: String, commandLine: String, dependsOn: [String] = [], health: HealthCheckSpec = HealthCheckSpec(),
            restart: RestartSpec = RestartSpec(), stop: StopSpec = .default
        ) {
            self.name = name
            self.commandLine = commandLine
            self.dependsOn = dependsOn
            self.health = health
            self.restart = restart
            self.stop = stop
        }

        /// The configuration of a (resolved) manifest.
        public init(manifest: ServiceManifest) {
            self.init(
                name: manifest.name, commandLine: manifest.command.joined(separator: " "), dependsOn: manifest.dependsOn,
                health: manifest.health, restart: manifest.restart, stop: manifest.stop)
        }
    }

    /// The first health check comes this soon after the spawn; while the service is starting and not
    /// healthy, the delay doubles up to the manifest's interval.
    public static let firstCheckDelay: Duration = .milliseconds(20)

    public let configuration: Configuration
    /// Where the service is.
    public internal(set) var state: RunnerState = .stopped
    /// The number of the current start attempt; reports of other attempts are ignored.
    public internal(set) var attempt: UInt64 = 0
    /// Restarts after unexpected ends (never reset: an operator's start keeps counting).
    public internal(set) var restarts: UInt32 = 0
    /// What the latest change said.
    public internal(set) var message = ""
    /// How the latest process ended (nil after a start that failed before a process ran).
    public internal(set) var lastExit: ExitStatus?
    /// When the latest process started.
    public internal(set) var lastStartedAt: Date?
    /// What the latest health check said, and when.
    public internal(set) var healthMessage = ""
    public internal(set) var healthCheckedAt: Date?
    /// Restart delays and crash-loop detection.
    var backoff: RestartBackoff

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.backoff = RestartBackoff(spec: configuration.restart)
    }

    /// What the service's status says now.
    public var snapshot: RunnerSnapshot {
        RunnerSnapshot(
            state: state.serviceState, pid: state.process?.pid ?? 0, startedAt: lastStartedAt, restarts: restarts,
            health: state.process?.health ?? .none, healthMessage: healthMessage, healthCheckedAt: healthCheckedAt,
            lastExit: lastExit, message: message)
    }

    /// Applies `event`, which happened at `now` (`date` on the wall clock); returns what to do.
    public mutating func handle(_ event: RunnerEvent, at now: ContinuousClock.Instant, date: Date) -> [RunnerAction] {
        switch event {
        case .start: start()
        case .stop: stop(at: now)
        case .dependenciesResolved(let outcome, let attempt): dependenciesResolved(outcome, attempt: attempt)
        case .initFinished(let attempt, let error): initFinished(attempt: attempt, error: error)
        case .spawnFinished(let attempt, let outcome): spawnFinished(attempt: attempt, outcome, at: now, date: date)
        case .healthChecked(let pid, let result, let detail): healthChecked(pid: pid, result: result, detail: detail, date: date)
        case .watchdogPinged: watchdogPinged(at: now)
        case .timerFired(let timer, let attempt): timerFired(timer, attempt: attempt, at: now)
        case .processExited(let pid, let status): processExited(pid: pid, status: status, at: now)
        case .postStopFinished(let attempt): postStopFinished(attempt: attempt, at: now)
        }
    }

    // MARK: operator's requests

    /// Starts the service unless it is already meant to run; a `failed` or `exited` one starts afresh
    /// (restart history forgotten). A start during a stop takes effect once the stop is complete.
    public mutating func start() -> [RunnerAction] {
        switch state {
        case .stopped, .failed, .exited:
            backoff.reset()
            return beginAttempt()
        case .initializing(.some):
            state = .initializing(stop: .startAgain)
        case .spawning(.some):
            state = .spawning(stop: .startAgain)
        case .stopping(let process, .requested, let since):
            state = .stopping(process, .requested(.startAgain), since: since)
        case .cleaningUp(let ending, .some):
            state = .cleaningUp(ending, stop: .startAgain)
        case .waiting, .initializing(.none), .spawning(.none), .starting, .running, .unhealthy, .stopping(_, .killed, _),
             .cleaningUp(_, .none), .backoff:
            break
        }
        return []
    }

    /// Stops the service; ``RunnerAction/stopCompleted`` comes once nothing of it runs any more.
    public mutating func stop(at now: ContinuousClock.Instant) -> [RunnerAction] {
        switch state {
        case .stopped, .failed, .exited:
            return [.stopCompleted]
        case .waiting, .backoff:
            return finishStop(.stayDown)
        case .initializing(.none):
            return [enter(.initializing(stop: .stayDown), "stopping (killing its init hook)"), .killInitHook]
        case .initializing(.some):
            state = .initializing(stop: .stayDown)
        case .spawning(.none):
            return [enter(.spawning(stop: .stayDown), "stopping (\(configuration.stop.signalName))")]
        case .spawning(.some):
            state = .spawning(stop: .stayDown)
        case .starting(let process), .running(let process), .unhealthy(let process):
            return terminate(process, .requested(.stayDown), at: now)
        case .stopping(let process, _, let since):
            // Already signalled (by a stop, or for its grace or watchdog): it now ends in `stopped`.
            state = .stopping(process, .requested(.stayDown), since: since)
        case .cleaningUp(let ending, .none):
            return [enter(.cleaningUp(ending, stop: .stayDown), "stopping (post-stop hook running)")]
        case .cleaningUp(let ending, .some):
            state = .cleaningUp(ending, stop: .stayDown)
        }
        return []
    }

    // MARK: shared steps

    /// Enters `next` saying `message`; returns its broadcast.
    mutating func enter(_ next: RunnerState, _ message: String) -> RunnerAction {
        state = next
        self.message = message
        return .emit(.state, message: "\(configuration.name) \(next.serviceState.rawValue): \(message)", snapshot)
    }

    /// A new attempt: wait for the dependencies, or go straight to the init hook.
    mutating func beginAttempt() -> [RunnerAction] {
        attempt += 1
        guard configuration.dependsOn.isEmpty else {
            let names = configuration.dependsOn.joined(separator: ", ")
            return [enter(.waiting, "waiting for \(names)"), .awaitDependencies(attempt: attempt)]
        }
        return beginInit()
    }

    mutating func beginInit() -> [RunnerAction] {
        [enter(.initializing(stop: nil), "starting"), .runInitHook(attempt: attempt)]
    }

    /// Enters a state where nothing runs and nothing is scheduled.
    mutating func rest(_ next: RunnerState, _ message: String) -> [RunnerAction] {
        [enter(next, message), .cancelTimers, .closeNotifySocket]
    }

    /// The stop is complete; starts again if a start arrived meanwhile.
    mutating func finishStop(_ request: StopRequest) -> [RunnerAction] {
        var actions = rest(.stopped, "stopped") + [.stopCompleted]
        if request == .startAgain {
            backoff.reset()
            actions += beginAttempt()
        }
        return actions
    }

    /// Sends the stop signal to the process group; SIGKILL follows at the stop timeout.
    mutating func terminate(_ process: RunningProcess, _ termination: Termination, at now: ContinuousClock.Instant) -> [RunnerAction] {
        let stop = configuration.stop
        let why: String
        let message: String
        switch termination {
        case .requested:
            why = "stop requested"
            message = "stopping (\(stop.signalName))"
        case .killed(let reason):
            why = reason
            message = "stopping (\(stop.signalName)): \(reason)"
        }
        var stopping = process
        stopping.health = .none
        return [
            .cancelTimers,
            enter(.stopping(stopping, termination, since: now), message),
            .log("sending \(stop.signalName) to process group \(process.pid) (\(why))", isError: false),
            .signalGroup(pid: process.pid, signal: stop.signal),
            .startTimer(.kill, attempt: attempt, at: now + stop.timeout),
        ]
    }

    /// The attempt ended as `ending` says: the post-stop hook runs next.
    mutating func cleanUp(_ ending: Ending, stop: StopRequest?, kind: RunnerEventKind) -> [RunnerAction] {
        let next = RunnerState.cleaningUp(ending, stop: stop)
        let broadcast: RunnerAction
        if kind == .exit {
            state = next
            message = ending.description
            broadcast = .emit(.exit, message: "\(configuration.name) \(ending.description)", snapshot)
        } else {
            broadcast = enter(next, ending.description)
        }
        return [broadcast, .runPostStopHook(attempt: attempt)]
    }
}
