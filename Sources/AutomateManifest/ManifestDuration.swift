/// Durations in manifests: an integer and a unit, `"250ms"`, `"5s"`, `"2m"`, `"1h"`.
public enum ManifestDuration {
    /// Parses a duration; returns nil unless the text is digits followed by `ms`, `s`, `m` or `h`.
    /// Zero parses (callers reject it where a duration must be positive).
    public static func parse(_ text: String) -> Duration? {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let unit = text.dropFirst(digits.count)
        guard !digits.isEmpty, digits.count <= 12, let n = Int64(digits) else { return nil }
        switch unit {
        case "ms": return .milliseconds(n)
        case "s": return .seconds(n)
        case "m": return .seconds(n * 60)
        case "h": return .seconds(n * 3600)
        default: return nil
        }
    }

    /// Renders a duration in the manifest notation, with the largest unit that is exact (`"90s"`, `"2m"`,
    /// `"250ms"`); sub-millisecond parts are rounded down.
    public static func format(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if ms % 3_600_000 == 0 && ms != 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 && ms != 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}
