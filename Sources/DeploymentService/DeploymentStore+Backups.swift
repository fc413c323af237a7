import Foundation
import GRDB

/// The backup journal: a backup is recorded when it starts (with its services), each service's outcome
/// as it ends, and the backup's outcome last. A backup a crash left `in_progress` is failed at the next
/// start and flagged until its failure is written to the repository too.
extension DeploymentStore {
    /// A backup as recorded.
    public struct Backup: Sendable, Equatable {
        public var id: String
        /// `in_progress`, `completed` or `failed`.
        public var state: String
        public var startedAt: Int64
        public var finishedAt: Int64?
        public var error: String
        public var bytes: Int64
        public var fingerprint: String
        /// backup-result.json's text.
        public var result: String
    }

    /// One service's part of a backup, as journaled when it ended (`running` until then).
    public struct ServiceOutcome: Sendable, Equatable {
        public var service: String
        /// `running`, `completed`, `failed` or `cancelled`.
        public var state: String
        public var error: String
        public var bytes: Int64
        public var startedAt: Int64
        public var finishedAt: Int64?
    }

    /// Journals a backup's start: its id and the services taking part, each `running`.
    public func insertBackup(id: String, startedAt: Int64, services: [String] = []) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT INTO backups (id, state, started_at, services) VALUES (?, 'in_progress', ?, ?)",
                arguments: [id, startedAt, services.joined(separator: ",")])
            for service in services {
                try db.execute(
                    sql: "INSERT INTO backup_services (backup_id, service, state, started_at) VALUES (?, ?, 'running', ?)",
                    arguments: [id, service, startedAt])
            }
        }
    }

    /// Journals the end of one service's part (its final state, error and bytes written).
    public func recordServiceOutcome(backupID: String, _ outcome: ServiceOutcome) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO backup_services (backup_id, service, state, error, bytes, started_at, finished_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(backup_id, service) DO UPDATE SET state = excluded.state, error = excluded.error,
                      bytes = excluded.bytes, started_at = excluded.started_at, finished_at = excluded.finished_at
                    """,
                arguments: [backupID, outcome.service, outcome.state, outcome.error, outcome.bytes, outcome.startedAt, outcome.finishedAt])
        }
    }

    /// The services of a backup with their journaled outcome, in start order.
    public func serviceOutcomes(backupID: String) throws -> [ServiceOutcome] {
        try pool.read { db in
            let order = (try String.fetchOne(db, sql: "SELECT services FROM backups WHERE id = ?", arguments: [backupID]) ?? "")
                .split(separator: ",").map(String.init)
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM backup_services WHERE backup_id = ?", arguments: [backupID]).map { row in
                ServiceOutcome(service: row["service"], state: row["state"], error: row["error"], bytes: row["bytes"],
                               startedAt: row["started_at"], finishedAt: row["finished_at"])
            }
            return rows.sorted { (order.firstIndex(of: $0.service) ?? .max, $0.service) < (order.firstIndex(of: $1.service) ?? .max, $1.service) }
        }
    }

    /// Journals a backup's outcome. `repositoryPending`: the repository does not say so yet (its
    /// `.status` could not be written); the next start writes it.
    public func finishBackup(
        id: String, state: String, finishedAt: Int64, error: String, bytes: Int64, fingerprint: String, result: String,
        repositoryPending: Bool = false
    ) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE backups SET state = ?, finished_at = ?, error = ?, bytes = ?, fingerprint = ?, result = ?, repository_pending = ? WHERE id = ?",
                arguments: [state, finishedAt, error, bytes, fingerprint, result, repositoryPending, id])
        }
    }

    /// Backups not deleted, oldest first.
    public func backups() throws -> [Backup] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM backups WHERE deleted = 0 ORDER BY id").map(Self.backup)
        }
    }

    public func backup(_ id: String) throws -> Backup? {
        try pool.read { db in try Row.fetchOne(db, sql: "SELECT * FROM backups WHERE id = ?", arguments: [id]).map(Self.backup) }
    }

    /// The most recent backup not deleted (ids are start times), nil when none ever ran.
    public func latestBackup() throws -> Backup? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM backups WHERE deleted = 0 ORDER BY started_at DESC, id DESC LIMIT 1").map(Self.backup)
        }
    }

    /// True when the id was ever used (deleted ones included): ids are never reused.
    public func backupIDUsed(_ id: String) throws -> Bool {
        try pool.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM backups WHERE id = ?)", arguments: [id]) ?? false }
    }

    public func markDeleted(_ id: String) throws {
        try pool.write { db in try db.execute(sql: "UPDATE backups SET deleted = 1 WHERE id = ?", arguments: [id]) }
    }

    /// Backups left `in_progress` by a deployment-service that died: failed with `reason` (their services
    /// still running too) and flagged until the repository says so as well. Returns them as now recorded.
    public func failInterrupted(reason: String) throws -> [Backup] {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        return try pool.write { db in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM backups WHERE state = 'in_progress'")
            for id in ids {
                try db.execute(
                    sql: "UPDATE backup_services SET state = 'failed', error = ?, finished_at = ? WHERE backup_id = ? AND state = 'running'",
                    arguments: ["stopped: \(reason)", now, id])
                try db.execute(
                    sql: "UPDATE backups SET state = 'failed', error = ?, finished_at = ?, repository_pending = 1 WHERE id = ?",
                    arguments: [reason, now, id])
            }
            return try ids.compactMap { try Row.fetchOne(db, sql: "SELECT * FROM backups WHERE id = ?", arguments: [$0]).map(Self.backup) }
        }
    }

    /// Sets a backup's result (backup-result.json's text) alone.
    public func settleResult(id: String, result: String) throws {
        try pool.write { db in try db.execute(sql: "UPDATE backups SET result = ? WHERE id = ?", arguments: [result, id]) }
    }

    /// Backups whose failure still has to be written to the repository, oldest first.
    public func backupsPendingInRepository() throws -> [Backup] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM backups WHERE repository_pending = 1 AND deleted = 0 ORDER BY id").map(Self.backup)
        }
    }

    /// Records what the repository now holds for a backup a crash left running: its state there (failed,
    /// or completed when it turned out to have finished), its result and fingerprint; clears the flag.
    public func settleInRepository(id: String, state: String, error: String, fingerprint: String, result: String) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE backups SET state = ?, error = ?, fingerprint = ?, result = ?, repository_pending = 0 WHERE id = ?",
                arguments: [state, error, fingerprint, result, id])
        }
    }

    /// Records a backup found `in_progress` in the repository that this store never knew (its own store
    /// was restored from an older copy, or lost): failed with `reason`.
    public func insertFailedBackup(id: String, startedAt: Int64, reason: String, result: String) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO backups (id, state, started_at, finished_at, error, result) VALUES (?, 'failed', ?, ?, ?, ?)
                    ON CONFLICT(id) DO NOTHING
                    """,
                arguments: [id, startedAt, Int64(Date().timeIntervalSince1970 * 1000), reason, result])
        }
    }

    static func backup(_ row: Row) -> Backup {
        Backup(id: row["id"], state: row["state"], startedAt: row["started_at"], finishedAt: row["finished_at"],
               error: row["error"], bytes: row["bytes"], fingerprint: row["fingerprint"], result: row["result"])
    }
}
