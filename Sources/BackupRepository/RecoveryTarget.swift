import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a point-in-time recovery stops: a moment, a WAL position, or the end of a base backup (its
/// earliest consistent point).
public enum RecoveryTarget: Sendable, Equatable, CustomStringConvertible {
    case time(Date)
    case lsn(UInt64)
    case backupEnd

    /// Reads `--to-time`: `2026-12-01 16:58:00Z`, `2026-12-01T16:58:00.250123+01:00`, or without a
    /// zone (read as UTC), to the microsecond. Throws naming the text when it is none of these.
    public static func time(parsing text: String) throws -> RecoveryTarget {
        let pattern = #"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})? ?(Z|UTC|[+-]\d{2}(:?\d{2})?)?$"#
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let regex = try! NSRegularExpression(pattern: pattern)
        guard let match = regex.firstMatch(in: trimmed, range: NSRange(trimmed.startIndex..., in: trimmed)) else {
            throw BackupRepository.Failure(
                kind: .invalid, message: "--to-time \"\(text)\" is not a time: write it as 2026-12-01 16:58:00Z (a zone such as +01:00 instead of Z; none means UTC)")
        }
        func group(_ i: Int) -> String? {
            guard let range = Range(match.range(at: i), in: trimmed) else { return nil }
            return String(trimmed[range])
        }
        let fields = (1...6).map { Int(group($0)!)! }
        var parts = tm()
        parts.tm_year = Int32(fields[0] - 1900); parts.tm_mon = Int32(fields[1] - 1); parts.tm_mday = Int32(fields[2])
        parts.tm_hour = Int32(fields[3]); parts.tm_min = Int32(fields[4]); parts.tm_sec = Int32(fields[5])
        guard (1...12).contains(fields[1]), (1...31).contains(fields[2]), fields[3] < 24, fields[4] < 60, fields[5] < 61 else {
            throw BackupRepository.Failure(kind: .invalid, message: "--to-time \"\(text)\" is not a time: a field is out of range")
        }
        var seconds = Double(timegm(&parts))
        if let fraction = group(7) { seconds += Double("0" + fraction) ?? 0 }
        if let zone = group(8), zone != "Z", zone != "UTC" {
            let digits = zone.dropFirst().filter(\.isNumber)
            let hours = Int(digits.prefix(2)) ?? 0, minutes = digits.count > 2 ? Int(digits.dropFirst(2)) ?? 0 : 0
            let offset = Double(hours * 3600 + minutes * 60)
            seconds -= zone.hasPrefix("-") ? -offset : offset
        }
        return .time(Date(timeIntervalSince1970: seconds))
    }

    /// Reads `--to-lsn`: `0/3000060` (two hexadecimal halves, as PostgreSQL writes them).
    public static func lsn(parsing text: String) throws -> RecoveryTarget {
        guard let value = WALSegment.parseLSN(text.trimmingCharacters(in: .whitespaces)) else {
            throw BackupRepository.Failure(kind: .invalid, message: "--to-lsn \"\(text)\" is not a WAL position: write it as PostgreSQL does, e.g. 0/3000060")
        }
        return .lsn(value)
    }

    /// `2026-12-01 16:58:00.250000+00`: a timestamp PostgreSQL reads, in UTC, to the microsecond.
    public static func postgresTime(_ date: Date) -> String {
        var micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var whole = time_t(micros / 1_000_000)
        micros %= 1_000_000
        if micros < 0 { micros += 1_000_000; whole -= 1 }
        var parts = tm()
        gmtime_r(&whole, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(micros))
    }

    /// `0/3000060`.
    public static func lsnText(_ value: UInt64) -> String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    /// The target as the deployment-service's request names it: kind and value.
    public var wire: (kind: String, value: String) {
        switch self {
        case .time(let date): ("time", Self.postgresTime(date))
        case .lsn(let value): ("lsn", Self.lsnText(value))
        case .backupEnd: ("backup_end", "")
        }
    }

    public var description: String {
        switch self {
        case .time(let date): "the time \(Self.postgresTime(date).dropLast(3)) UTC"
        case .lsn(let value): "WAL position \(Self.lsnText(value))"
        case .backupEnd: "the end of the base backup"
        }
    }
}
