import Foundation

/// A backup id: the UTC time of creation as `yyyyMMddHHmmss` (e.g. `20260302081223`).
public struct BackupID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Accepts exactly 14 digits forming a valid UTC date and time.
    public init?(_ text: String) {
        guard text.count == 14, text.allSatisfy(\.isASCIIDigit), Self.date(of: text) != nil else { return nil }
        rawValue = text
    }

    /// The id for `date` (UTC, whole seconds).
    public init(date: Date) {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        rawValue = String(
            format: "%04d%02d%02d%02d%02d%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
            parts.tm_min, parts.tm_sec)
    }

    /// When the backup was created.
    public var date: Date { Self.date(of: rawValue)! }

    public var description: String { rawValue }

    public static func < (a: BackupID, b: BackupID) -> Bool { a.rawValue < b.rawValue }

    private static func date(of text: String) -> Date? {
        let digits = text.compactMap(\.wholeNumberValue)
        guard digits.count == 14 else { return nil }
        func number(_ range: Range<Int>) -> Int32 { digits[range].reduce(0) { $0 * 10 + Int32($1) } }
        var parts = tm()
        parts.tm_year = number(0..<4) - 1900
        parts.tm_mon = number(4..<6) - 1
        parts.tm_mday = number(6..<8)
        parts.tm_hour = number(8..<10)
        parts.tm_min = number(10..<12)
        parts.tm_sec = number(12..<14)
        guard (0...11).contains(parts.tm_mon), (1...31).contains(parts.tm_mday), (0...23).contains(parts.tm_hour),
              (0...59).contains(parts.tm_min), (0...60).contains(parts.tm_sec) else { return nil }
        let check = parts
        let seconds = timegm(&parts)
        // timegm normalises impossible dates (Feb 30): refuse those.
        guard parts.tm_mday == check.tm_mday, parts.tm_mon == check.tm_mon else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
