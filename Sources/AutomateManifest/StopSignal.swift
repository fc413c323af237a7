#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The signals a manifest may name in `[stop] signal`.
public enum StopSignal {
    /// Canonical names with their numbers on this platform, in the order they are listed in error messages.
    public static let supported: [(name: String, number: Int32)] = [
        ("SIGTERM", SIGTERM), ("SIGINT", SIGINT), ("SIGQUIT", SIGQUIT), ("SIGHUP", SIGHUP),
        ("SIGUSR1", SIGUSR1), ("SIGUSR2", SIGUSR2), ("SIGKILL", SIGKILL),
    ]

    /// Looks up `"SIGTERM"`, `"TERM"` (case-insensitive); returns the canonical name and number.
    public static func lookup(_ text: String) -> (name: String, number: Int32)? {
        var upper = text.uppercased()
        if !upper.hasPrefix("SIG") { upper = "SIG" + upper }
        return supported.first { $0.name == upper }
    }
}
