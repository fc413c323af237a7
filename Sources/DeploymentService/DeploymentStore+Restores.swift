import Foundation
import GRDB

/// The restore journal: a restore is recorded when it starts, as each service's part changes state and
/// when it ends, with its whole last status (a serialized `StackRestore`), so that `restore status`
/// answers after a restart and a restore a crash left running is failed at the next start.
extension DeploymentStore {
    /// A restore as recorded.
    public struct Restore: Sendable, Equatable {
        public var id: String
        public var backupID: String
        /// `running`, `completed`, `failed` or `cancelled`.
        public var shortState: String
        public var longState: String
        public var startedAt: Int64
        public var finishedAt: Int64?
        public var error: String
        /// The last status journaled (a serialized `StackRestore`), nil for restores recorded before v2.
        public var status: Data?
    }

    /// Journals a restore (inserted on first sight, updated after).
    public func recordRestore(id: String, backupID: String, shortState: String, longState: String, startedAt: Int64,
                              finishedAt: Int64?, error: String, status: Data? = nil) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO restores (id, backup_id, short_state, long_state, started_at, finished_at, error, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET short_state = excluded.short_state, long_state = excluded.long_state,
                      finished_at = excluded.finished_at, error = excluded.error, status = coalesce(excluded.status, status)
                    """,
                arguments: [id, backupID, shortState, longState, startedAt, finishedAt, error, status])
        }
    }

    public func restore(_ id: String) throws -> Restore? {
        try pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM restores WHERE id = ?", arguments: [id]).map(Self.restore) }
    }

    /// The most recent restore, nil when none ever ran.
    public func latestRestore() throws -> Restore? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM restores ORDER BY started_at DESC, id DESC LIMIT 1").map(Self.restore)
        }
    }

    /// Restores still `running` in either part: left so by a deployment-service that died.
    public func runningRestores() throws -> [Restore] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM restores WHERE short_state = 'running' OR long_state = 'running' ORDER BY started_at")
                .map(Self.restore)
        }
    }

    static func restore(_ row: Row) -> Restore {
        Restore(id: row["id"], backupID: row["backup_id"], shortState: row["short_state"], longState: row["long_state"],
                startedAt: row["started_at"], finishedAt: row["finished_at"], error: row["error"], status: row["status"])
    }
}
