import DataTools
import Foundation
import Logging
import Synchronization

/// Puts a restored database in place of the one of the same name, without waiting for the old one to
/// be dropped.
///
/// `DROP DATABASE` ends with a checkpoint that waits for every file written since the last one to reach
/// the disk: after a restore that is the whole restored database, seconds of writing on the restore's
/// critical path. The restored data does not need it (its commits are in the WAL, which is flushed), so
/// the old database is renamed aside instead, closed to new sessions and with its sessions ended, and
/// ``dropReplaced(server:logger:)`` drops it afterwards, off the restore's path. A database left aside
/// by a sidecar that died in between carries ``marker`` in its name and is dropped by the next restore's
/// ``dropReplaced(server:logger:)``.
struct DatabaseSwap {
    /// In the name of every database put aside (and in no name a restore makes otherwise).
    static let marker = "__replaced_"
    /// How long the old database's sessions get to end once told to.
    static let sessionDeadline: Duration = .seconds(10)

    let admin: PGConnection

    /// Aside names of swaps under way in this process: ``dropReplaced(server:logger:)`` leaves them alone,
    /// since a swap whose second rename fails renames its aside database back.
    private static let inFlight = Mutex(Set<String>())

    /// The name `name` is put aside under: at most 63 bytes (PostgreSQL's limit), unique per restore.
    static func asideName(_ name: String, restore id: String) -> String {
        let suffix = marker + String(id.suffix(12))
        var base = name
        while base.utf8.count + suffix.utf8.count > 63 { base.removeLast() }
        return base + suffix
    }

    /// Renames `temp` to `name`; an existing `name` is first closed to new sessions, its sessions ended,
    /// and renamed to `aside`. Returns whether a database was put aside. On a failure the old database
    /// keeps (or gets back) its name and accepts sessions again, and `temp` is left as it was.
    @discardableResult
    func swap(_ temp: String, into name: String, aside: String) throws -> Bool {
        guard try admin.databaseExists(name) else {
            try admin.query("ALTER DATABASE \(quoteIdent(temp)) RENAME TO \(quoteIdent(name))")
            return false
        }
        Self.inFlight.withLock { _ = $0.insert(aside) }
        defer { Self.inFlight.withLock { _ = $0.remove(aside) } }
        try admin.query("DROP DATABASE IF EXISTS \(quoteIdent(aside))")
        try admin.query("ALTER DATABASE \(quoteIdent(name)) WITH ALLOW_CONNECTIONS false")
        do {
            try endSessions(of: name)
            try admin.query("ALTER DATABASE \(quoteIdent(name)) RENAME TO \(quoteIdent(aside))")
        } catch {
            _ = try? admin.query("ALTER DATABASE \(quoteIdent(name)) WITH ALLOW_CONNECTIONS true")
            throw error
        }
        do {
            try admin.query("ALTER DATABASE \(quoteIdent(temp)) RENAME TO \(quoteIdent(name))")
        } catch {
            if (try? admin.query("ALTER DATABASE \(quoteIdent(aside)) RENAME TO \(quoteIdent(name))")) != nil {
                _ = try? admin.query("ALTER DATABASE \(quoteIdent(name)) WITH ALLOW_CONNECTIONS true")
            }
            throw error
        }
        return true
    }

    /// Ends every other session on `database` (which no longer accepts new ones) and waits until they
    /// are gone, at most ``sessionDeadline``.
    private func endSessions(of database: String) throws {
        let others = "FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
        let deadline = ContinuousClock.now + Self.sessionDeadline
        // PostgreSQL 14 and later wait for each session's end themselves (up to the timeout given).
        let wait = admin.majorVersion >= 14 ? ", \(Self.sessionDeadline.components.seconds * 1000)" : ""
        while true {
            let rows = try admin.query("SELECT count(*), count(pg_terminate_backend(pid\(wait))) \(others)", [database])
            if rows.first?.first.flatMap({ $0 }).flatMap({ Int($0) }) == 0 { return }
            guard ContinuousClock.now < deadline else {
                let left = try admin.query("SELECT pid, coalesce(application_name, '') \(others)", [database])
                    .map { "\($0[0] ?? "?") (\($0[1] ?? ""))" }.joined(separator: ", ")
                throw PGSidecarError(
                    .server,
                    "the sessions on database \(database) did not end within \(Self.sessionDeadline) of being terminated (still there: \(left)); nothing was replaced, the restored data was dropped: stop what holds them and restore again")
            }
            // Before 14, pg_terminate_backend only signals: look again shortly.
            if wait.isEmpty { try admin.query("SELECT pg_sleep(0.05)") }
        }
    }

    /// Drops every database a restore put aside (this one's and any a stopped sidecar left), one at a
    /// time, each with its checkpoint. Failures are logged: the next restore tries again.
    static func dropReplaced(server: PGServer, logger: Logger) {
        do {
            let admin = try PGConnection(server)
            let pattern = "%" + marker.replacingOccurrences(of: "_", with: "\\_") + "%"
            for row in try admin.query("SELECT datname FROM pg_database WHERE datname LIKE $1", [pattern]) {
                guard let name = row.first ?? nil, !inFlight.withLock({ $0.contains(name) }) else { continue }
                let started = ContinuousClock.now
                try admin.query("DROP DATABASE IF EXISTS \(quoteIdent(name)) WITH (FORCE)")
                logger.info("dropped \(name), the database a restore replaced, in \(ContinuousClock.now - started)")
            }
        } catch {
            logger.warning("could not drop a database a restore replaced (the next restore tries again): \(error)")
        }
    }
}
