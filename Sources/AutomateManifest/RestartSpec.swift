/// The `[restart]` table: restart policy, exponential backoff and crash-loop detection.
public struct RestartSpec: Sendable, Equatable {
    /// Default policy: `on-failure`.
    public static let defaultPolicy: RestartPolicy = .onFailure
    /// Default first backoff delay: 200 milliseconds.
    public static let defaultBackoffBase: Duration = .milliseconds(200)
    /// Default longest backoff delay: 30 seconds.
    public static let defaultBackoffMax: Duration = .seconds(30)
    /// Default crash-loop limit: 5 restarts ...
    public static let defaultCrashLoopLimit = 5
    /// ... within 60 seconds.
    public static let defaultCrashLoopWindow: Duration = .seconds(60)
    /// Default running time that resets the backoff: 60 seconds.
    public static let defaultResetAfter: Duration = .seconds(60)

    /// When to restart. Default `on-failure`.
    public var policy: RestartPolicy
    /// The first restart delay; it doubles with every consecutive restart. Default 200ms.
    public var backoffBase: Duration
    /// The longest restart delay (always `>= backoffBase`). Default 30s.
    public var backoffMax: Duration
    /// More than this many restarts within ``crashLoopWindow`` marks the service `failed`. Default 5 (>= 1).
    public var crashLoopLimit: Int
    /// The window for ``crashLoopLimit``. Default 60s.
    public var crashLoopWindow: Duration
    /// Running this long without exiting resets the backoff to ``backoffBase``. Default 60s.
    public var resetAfter: Duration

    /// Creates a restart spec; every argument defaults to the documented default.
    public init(
        policy: RestartPolicy = RestartSpec.defaultPolicy,
        backoffBase: Duration = RestartSpec.defaultBackoffBase,
        backoffMax: Duration = RestartSpec.defaultBackoffMax,
        crashLoopLimit: Int = RestartSpec.defaultCrashLoopLimit,
        crashLoopWindow: Duration = RestartSpec.defaultCrashLoopWindow,
        resetAfter: Duration = RestartSpec.defaultResetAfter
    ) {
        self.policy = policy
        self.backoffBase = backoffBase
        self.backoffMax = backoffMax
        self.crashLoopLimit = crashLoopLimit
        self.crashLoopWindow = crashLoopWindow
        self.resetAfter = resetAfter
    }

    /// The delay before restart number `attempt` (1-based): `backoffBase * 2^(attempt-1)`, capped at
    /// ``backoffMax``.
    public func backoff(attempt: Int) -> Duration {
        guard attempt > 1, backoffBase > .zero else { return min(backoffBase, backoffMax) }
        var delay = backoffBase
        for _ in 1..<attempt {
            delay = delay * 2
            if delay >= backoffMax { return backoffMax }
        }
        return delay
    }
}
