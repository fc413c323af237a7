import Foundation

/// One thing ``ServiceRunner`` does because ``RunnerStateMachine`` said so. Actions are executed in
/// order; the ones that take time report back with a ``RunnerEvent``.
public enum RunnerAction: Sendable, Equatable {
    /// Broadcasts the status the service had at this point, as an event of `kind` saying `message`.
    case emit(RunnerEventKind, message: String, RunnerSnapshot)
    /// Writes a line of the supervisor's own into the service's log (and the supervisor's, if an error).
    case log(String, isError: Bool)
    /// Waits for the dependencies; reports ``RunnerEvent/dependenciesResolved(_:attempt:)``.
    case awaitDependencies(attempt: UInt64)
    /// Prepares the data folder and runs the init hook; reports ``RunnerEvent/initFinished(attempt:error:)``.
    case runInitHook(attempt: UInt64)
    /// Kills the running init hook's process group (it then reports as failed).
    case killInitHook
    /// Starts the process; reports ``RunnerEvent/spawnFinished(attempt:_:)``, then, when its process
    /// has exited (and what it left in its group is killed), ``RunnerEvent/processExited(pid:status:)``.
    case spawn(attempt: UInt64)
    /// Runs one health check after `after`; reports ``RunnerEvent/healthChecked(pid:result:detail:)``.
    case checkHealth(pid: pid_t, after: Duration)
    /// Fires `timer` at `at` (replacing the timer of that kind); reports ``RunnerEvent/timerFired(_:attempt:)``.
    case startTimer(RunnerTimer, attempt: UInt64, at: ContinuousClock.Instant)
    /// Cancels every timer and the pending health check.
    case cancelTimers
    /// Sends `signal` to the process group `pid`.
    case signalGroup(pid: pid_t, signal: Int32)
    /// Runs the post-stop hook; reports ``RunnerEvent/postStopFinished(attempt:)``.
    case runPostStopHook(attempt: UInt64)
    /// Closes the service's notify socket (it is bound again at the next spawn).
    case closeNotifySocket
    /// The stop under way is complete: callers waiting in ``ServiceRunner/stop()`` return.
    case stopCompleted
}

/// The runner's timers.
public enum RunnerTimer: Sendable, Hashable {
    /// The start-up grace is over.
    case grace
    /// Time to check that the service sent `WATCHDOG=1` recently enough.
    case watchdog
    /// The stop timeout is over: SIGKILL.
    case kill
    /// The restart delay is over.
    case backoff
}

/// The kind of a broadcast change (the event's `kind` on the wire).
public enum RunnerEventKind: String, Sendable {
    /// The state changed.
    case state
    /// Only the health changed.
    case health
    /// The process exited.
    case exit
}

/// What a service's status says at one moment (the wire's `ServiceStatus` without the manifest's part).
public struct RunnerSnapshot: Sendable, Equatable {
    public var state: ServiceState
    /// The live process's pid, 0 when none.
    public var pid: pid_t
    /// When the latest process started.
    public var startedAt: Date?
    /// Restarts after unexpected ends, since the runner was made.
    public var restarts: UInt32
    public var health: HealthResult
    public var healthMessage: String
    public var healthCheckedAt: Date?
    /// How the latest process ended.
    public var lastExit: ExitStatus?
    /// What the latest change said.
    public var message: String
}
