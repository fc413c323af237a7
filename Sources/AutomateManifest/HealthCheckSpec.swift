/// The `[health]` table: how the supervisor checks that a running service is healthy.
///
/// The table is optional; every field has a default.
public struct HealthCheckSpec: Sendable, Equatable {
    /// Default hook file name: `health-check`.
    public static let defaultHook = "health-check"
    /// Default interval between checks: 5 seconds.
    public static let defaultInterval: Duration = .seconds(5)
    /// Default time one check may take: 5 seconds.
    public static let defaultTimeout: Duration = .seconds(5)
    /// Default start-up grace: 60 seconds.
    public static let defaultGrace: Duration = .seconds(60)

    /// Hook file name inside `hooks/<service>/` (no `/`). Default `health-check`.
    public var hook: String
    /// Time between two checks. Default 5s.
    public var interval: Duration
    /// Time one check may take before it counts as failed. Default 5s.
    public var timeout: Duration
    /// How long the service may take to become healthy after start before it counts as failed to start.
    /// Default 60s.
    public var grace: Duration
    /// When set, the service must send `WATCHDOG=1` (the sd_notify protocol, to the datagram socket in
    /// its `NOTIFY_SOCKET`) at least this often; one that stops is killed and restarted. Default: none.
    public var watchdog: Duration?

    /// Creates a health check spec; every argument defaults to the documented default.
    public init(
        hook: String = HealthCheckSpec.defaultHook,
        interval: Duration = HealthCheckSpec.defaultInterval,
        timeout: Duration = HealthCheckSpec.defaultTimeout,
        grace: Duration = HealthCheckSpec.defaultGrace,
        watchdog: Duration? = nil
    ) {
        self.watchdog = watchdog
        self.hook = hook
        self.interval = interval
        self.timeout = timeout
        self.grace = grace
    }
}
