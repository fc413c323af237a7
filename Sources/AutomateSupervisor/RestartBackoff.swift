import AutomateManifest

/// When to restart a service that ended, and when to give up.
///
/// Delays follow decorrelated jitter (`min(cap, random(base ... previous × 3))`), reset once the service
/// has stayed up for the manifest's `reset_after`. More than `crash_loop_limit` restarts within
/// `crash_loop_window` puts the service in `failed` for good.
public struct RestartBackoff: Sendable {
    /// The manifest's restart section.
    public let spec: RestartSpec
    private var previous: Duration
    private var restartTimes: [ContinuousClock.Instant] = []

    public init(spec: RestartSpec) {
        self.spec = spec
        self.previous = spec.backoffBase
    }

    /// What to do after an end.
    public enum Decision: Sendable, Equatable {
        /// Restart after this delay.
        case restart(after: Duration)
        /// Too many restarts in the window: stop trying.
        case crashLoop(restarts: Int, within: Duration)
    }

    /// Records an end at `now` after the process ran for `uptime`; returns the decision.
    public mutating func record(endAt now: ContinuousClock.Instant, uptime: Duration) -> Decision {
        if uptime >= spec.resetAfter {
            previous = spec.backoffBase
            restartTimes.removeAll()
        }
        restartTimes.removeAll { now - $0 > spec.crashLoopWindow }
        if restartTimes.count >= spec.crashLoopLimit {
            return .crashLoop(restarts: restartTimes.count, within: spec.crashLoopWindow)
        }
        restartTimes.append(now)
        let base = spec.backoffBase
        let upper = max(base, previous * 3)
        let delay = min(spec.backoffMax, Self.random(from: base, to: upper))
        previous = delay
        return .restart(after: delay)
    }

    /// Forgets history (an operator's explicit start).
    public mutating func reset() {
        previous = spec.backoffBase
        restartTimes.removeAll()
    }

    static func random(from low: Duration, to high: Duration) -> Duration {
        let lowNanos = low.nanoseconds
        let highNanos = max(lowNanos, high.nanoseconds)
        return .nanoseconds(Int64.random(in: lowNanos...highNanos))
    }
}

extension Duration {
    /// Whole nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return whole &+ attoseconds / 1_000_000_000
    }

    /// Seconds as a Double.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Milliseconds, for poll(2) timeouts (at least 0).
    var milliseconds: Int32 {
        Int32(clamping: max(0, nanoseconds / 1_000_000))
    }
}
