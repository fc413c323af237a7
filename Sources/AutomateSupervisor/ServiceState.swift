/// Where a supervised service is in its life.
public enum ServiceState: String, Sendable, CaseIterable {
    /// Not running and not meant to be.
    case stopped
    /// Not started yet: the supervisor runs for a restore, which starts it once its data is in.
    case held
    /// Meant to run, waiting for its dependencies to be healthy.
    case waiting
    /// Its init hook or process is starting; not healthy yet.
    case starting
    /// Running and healthy (health ok or warning).
    case running
    /// Running, but its health check says critical or unknown.
    case unhealthy
    /// Ended unexpectedly; waiting out the restart delay.
    case backoff
    /// Being stopped.
    case stopping
    /// Gave up: crash loop, or a dependency failed. Needs an operator (`automate restart`).
    case failed
    /// Ended by itself and its restart policy says not to restart it.
    case exited

    /// True for the states in which the service counts as up for its dependents.
    public var isReady: Bool { self == .running }
}

/// The answer of a health check, with Habitat's exit codes.
public enum HealthResult: String, Sendable {
    case ok, warning, critical, unknown, none

    /// Maps a health-check hook's exit code: 0 ok, 1 warning, 2 critical, anything else unknown.
    public init(exitCode: Int32) {
        switch exitCode {
        case 0: self = .ok
        case 1: self = .warning
        case 2: self = .critical
        default: self = .unknown
        }
    }

    /// True when the service may be used (ok or warning).
    public var isHealthy: Bool { self == .ok || self == .warning }
}

/// One service's status as the control service reports it.
public typealias ServiceStatus = Automate_Supervisor_V1_ServiceStatus
/// A change broadcast to watchers.
public typealias SupervisorEvent = Automate_Supervisor_V1_Event
