import Foundation

/// Where one supervised service is in its life, with the data that belongs to that place: the
/// process while there is one, the pending stop while a start is under way, the end of the last
/// attempt while the post-stop hook runs, the restart time while backing off.
///
/// ``RunnerStateMachine`` moves between these states; ``serviceState`` is how each one is reported
/// (the wire's and the CLI's vocabulary).
public enum RunnerState: Sendable, Equatable {
    /// Not running and not meant to be.
    case stopped
    /// Meant to run; waiting for its dependencies to be healthy.
    case waiting
    /// Its data folder is being prepared and its init hook runs. `stop`: a stop arrived meanwhile
    /// (the hook is being killed).
    case initializing(stop: StopRequest?)
    /// Its process is being started (pipes, notify socket, fork and exec). `stop`: a stop arrived
    /// meanwhile; the new process group is signalled the moment the spawn returns.
    case spawning(stop: StopRequest?)
    /// Its process runs and has not been healthy yet.
    case starting(RunningProcess)
    /// Its process runs and is healthy (ok or warning).
    case running(RunningProcess)
    /// Its process runs; its health check says critical or unknown.
    case unhealthy(RunningProcess)
    /// Its process group got the stop signal at `since`; SIGKILL follows after the stop timeout.
    case stopping(RunningProcess, Termination, since: ContinuousClock.Instant)
    /// The attempt ended as `ending` says; the post-stop hook runs. `stop` nil: the restart policy
    /// decides what comes next; otherwise a stop brings it down.
    case cleaningUp(Ending, stop: StopRequest?)
    /// Ended unexpectedly; starts again at `until`.
    case backoff(until: ContinuousClock.Instant)
    /// Gave up (crash loop, a failed dependency): needs an operator.
    case failed(reason: String)
    /// Ended by itself and its restart policy says not to restart it (nil: it never ran).
    case exited(ExitStatus?)

    /// How this state is reported.
    public var serviceState: ServiceState {
        switch self {
        case .stopped: .stopped
        case .waiting: .waiting
        case .initializing(.none), .spawning(.none), .starting: .starting
        case .initializing, .spawning, .stopping: .stopping
        case .running: .running
        case .unhealthy: .unhealthy
        case .cleaningUp(_, .none): .backoff
        case .cleaningUp: .stopping
        case .backoff: .backoff
        case .failed: .failed
        case .exited: .exited
        }
    }

    /// The live process, in the states that have one.
    public var process: RunningProcess? {
        switch self {
        case .starting(let process), .running(let process), .unhealthy(let process), .stopping(let process, _, _):
            process
        default:
            nil
        }
    }

    /// True when nothing runs and nothing will happen until an operator starts it.
    public var isAtRest: Bool {
        switch self {
        case .stopped, .failed, .exited: true
        default: false
        }
    }
}

/// A process the runner started, while it lives.
public struct RunningProcess: Sendable, Equatable {
    /// Its pid, which is also its process group id.
    public let pid: pid_t
    /// When it started (wall clock, for status).
    public let startedAt: Date
    /// When it started (for grace, watchdog and uptime).
    public let startedInstant: ContinuousClock.Instant
    /// Its latest health.
    public var health: HealthResult = .none
    /// The delay before its next health check (fast while starting, then the manifest's interval).
    public var nextCheck: Duration
    /// Its latest `WATCHDOG=1`.
    public var lastWatchdogPing: ContinuousClock.Instant?

    public init(pid: pid_t, startedAt: Date, startedInstant: ContinuousClock.Instant, nextCheck: Duration) {
        self.pid = pid
        self.startedAt = startedAt
        self.startedInstant = startedInstant
        self.nextCheck = nextCheck
    }
}

/// An operator's stop, pending or under way.
public enum StopRequest: Sendable, Equatable {
    /// End in `stopped`.
    case stayDown
    /// A start arrived while it was stopping: once stopped, start again.
    case startAgain
}

/// Why the supervisor is ending a process.
public enum Termination: Sendable, Equatable {
    /// An operator asked.
    case requested(StopRequest)
    /// The supervisor killed it (start-up grace, watchdog); the restart policy decides what next.
    case killed(reason: String)
}

/// How one start attempt ended.
public struct Ending: Sendable, Equatable {
    /// The process's exit status; nil when no process ran (the init hook or the spawn failed).
    public var exit: ExitStatus?
    /// What is reported (`exited with code 3`, `watchdog: ...; killed by SIGTERM`, the init hook's error).
    public var description: String
    /// True when the supervisor killed it for a reason of its own (it then never counts as a clean exit).
    public var killedBySupervisor: Bool
    /// How long the process ran.
    public var uptime: Duration

    public init(exit: ExitStatus?, description: String, killedBySupervisor: Bool = false, uptime: Duration = .zero) {
        self.exit = exit
        self.description = description
        self.killedBySupervisor = killedBySupervisor
        self.uptime = uptime
    }
}
