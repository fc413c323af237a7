import Foundation

/// Something that happened to a service's runner: an operator's request, or the report of an action
/// (``RunnerAction``) that took time. Reports carry the attempt or pid they belong to, so that a late
/// report of an earlier attempt is recognised and ignored.
public enum RunnerEvent: Sendable, Equatable {
    /// An operator (or the supervisor's start-up) wants it running.
    case start
    /// An operator wants it stopped.
    case stop
    /// The dependency wait of `attempt` ended.
    case dependenciesResolved(DependencyOutcome, attempt: UInt64)
    /// The init hook of `attempt` ended; `error` says why it failed (nil: it succeeded or there is none).
    case initFinished(attempt: UInt64, error: String?)
    /// The spawn of `attempt` returned.
    case spawnFinished(attempt: UInt64, SpawnOutcome)
    /// A health check of process `pid` answered.
    case healthChecked(pid: pid_t, result: HealthResult, detail: String)
    /// The service sent `WATCHDOG=1`.
    case watchdogPinged
    /// A timer started by `attempt` fired.
    case timerFired(RunnerTimer, attempt: UInt64)
    /// Process `pid` exited (and what it left in its process group was killed).
    case processExited(pid: pid_t, status: ExitStatus)
    /// The post-stop hook of `attempt` ended.
    case postStopFinished(attempt: UInt64)
}

/// What a spawn came to.
public enum SpawnOutcome: Sendable, Equatable {
    /// The process runs, in its own process group `pid`.
    case spawned(pid_t)
    /// It could not be started (the message says why).
    case failed(String)
}
