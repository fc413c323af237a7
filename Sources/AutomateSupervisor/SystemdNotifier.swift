import CSystemd
import Foundation

/// Tells systemd about the supervisor (sd_notify through libsystemd): readiness, status text, reloads,
/// shutdown, watchdog pings. Does nothing, and never fails, when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: Sendable {
    /// True when systemd (or a test) listens on `NOTIFY_SOCKET`.
    public let enabled: Bool
    /// Half of this is how often `WATCHDOG=1` must be sent (nil: no watchdog asked for).
    public let watchdogInterval: Duration?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        enabled = !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
        var usec: UInt64 = 0
        if enabled, sd_watchdog_enabled(0, &usec) > 0, usec > 0 {
            watchdogInterval = .microseconds(Int64(usec))
        } else {
            watchdogInterval = nil
        }
    }

    /// Sends one state string, e.g. `"READY=1\nSTATUS=2/2 services healthy"`.
    public func notify(_ state: String) {
        guard enabled else { return }
        _ = sd_notify(0, state)
    }

    /// `READY=1` with the main pid and a status line.
    public func ready(status: String) {
        notify("READY=1\nMAINPID=\(getpid())\nSTATUS=\(status)")
    }

    /// `STATUS=...`.
    public func status(_ text: String) {
        notify("STATUS=\(text)")
    }

    /// `RELOADING=1` (systemd 253+ also wants MONOTONIC_USEC; older ones ignore it).
    public func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)\nSTATUS=reloading manifests")
    }

    /// `STOPPING=1`.
    public func stopping() {
        notify("STOPPING=1\nSTATUS=stopping services")
    }

    /// `WATCHDOG=1`.
    public func watchdogPing() {
        notify("WATCHDOG=1")
    }
}
