import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The content of a lock object, `locks/<random id>`: plaintext JSON (a lock holds no secret, and a
/// process must be able to read it before it has a passphrase), for example
///
///     {"created":"2026-05-01T10:00:00.000Z","exclusive":true,"hostname":"backup-1","pid":1234,
///      "purpose":"prune","refreshed":"2026-05-01T10:05:00.000Z"}
///
/// See ``Repository/lock(exclusive:purpose:staleAfter:refreshEvery:)`` for the rules.
public struct LockInfo: Sendable, Equatable {
    /// An exclusive lock conflicts with every other lock; a shared one only with exclusive ones.
    public var exclusive: Bool
    /// The host of the process holding it (`gethostname`).
    public var hostname: String
    /// The holding process's id on that host.
    public var pid: Int32
    /// What it is for, for people reading a conflict ("prune", "backup 2026-05-01").
    public var purpose: String
    /// When it was taken.
    public var created: Date
    /// When the holder last rewrote it (every few minutes while it is held).
    public var refreshed: Date

    public init(exclusive: Bool, hostname: String, pid: Int32, purpose: String, created: Date, refreshed: Date) {
        self.exclusive = exclusive
        self.hostname = hostname
        self.pid = pid
        self.purpose = purpose
        self.created = created
        self.refreshed = refreshed
    }

    /// A lock of this process, taken now.
    static func current(exclusive: Bool, purpose: String) -> LockInfo {
        let now = LockInfo.now()
        return LockInfo(exclusive: exclusive, hostname: currentHostname(), pid: getpid(), purpose: purpose, created: now, refreshed: now)
    }

    /// The time now, at the precision lock objects store (milliseconds), so a lock read back equals the
    /// one written.
    static func now() -> Date {
        parse(format(Date()))!
    }

    /// This host's name as `gethostname` gives it ("" when it fails).
    static func currentHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether a lock is no longer held: not refreshed for `staleAfter`, or taken on this host by a
    /// process that no longer exists (`kill(pid, 0)` fails with ESRCH).
    func isStale(now: Date, staleAfter: TimeInterval) -> Bool {
        if now.timeIntervalSince(refreshed) > staleAfter { return true }
        if hostname == Self.currentHostname(), pid > 0, kill(pid, 0) != 0, errno == ESRCH { return true }
        return false
    }

    /// "prune (exclusive, pid 1234 on host h, refreshed 3 min ago)".
    func describe(now: Date) -> String {
        "\(purpose.isEmpty ? "an unnamed operation" : purpose) (\(exclusive ? "exclusive" : "shared"), pid \(pid) on host \(hostname), "
            + "refreshed \(Self.age(now.timeIntervalSince(refreshed))))"
    }

    /// "12 s ago", "3 min ago", "5 h ago".
    static func age(_ seconds: TimeInterval) -> String {
        seconds < 0 ? "in the future (clocks differ)" : span(seconds) + " ago"
    }

    /// "12 s", "3 min", "5 h".
    static func span(_ seconds: TimeInterval) -> String {
        if seconds < 120 { return "\(Int(seconds)) s" }
        if seconds < 2 * 3600 { return "\(Int(seconds / 60)) min" }
        return "\(Int(seconds / 3600)) h"
    }

    // MARK: JSON

    private struct Stored: Codable {
        var exclusive: Bool
        var hostname: String
        var pid: Int32
        var purpose: String
        var created: String
        var refreshed: String
    }

    /// The object's bytes (sorted keys, ISO 8601 times in UTC with milliseconds).
    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let stored = Stored(
            exclusive: exclusive, hostname: hostname, pid: pid, purpose: purpose, created: Self.format(created), refreshed: Self.format(refreshed))
        do {
            return Array(try encoder.encode(stored))
        } catch {
            throw ChunkStoreError(.invalidArgument, "cannot encode lock object for \(purpose): \(error)")
        }
    }

    /// Parses a lock object; `name` is its key, for messages.
    static func decode(_ bytes: [UInt8], name: String) throws -> LockInfo {
        guard let stored = try? JSONDecoder().decode(Stored.self, from: Data(bytes)), let created = parse(stored.created),
            let refreshed = parse(stored.refreshed)
        else {
            throw ChunkStoreError(.damaged, "\(name) is not a lock object this build reads (JSON with exclusive, hostname, pid, purpose, created, refreshed)")
        }
        return LockInfo(exclusive: stored.exclusive, hostname: stored.hostname, pid: stored.pid, purpose: stored.purpose, created: created, refreshed: refreshed)
    }

    private static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    private static func parse(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = f.date(from: text) { return date }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }
}
