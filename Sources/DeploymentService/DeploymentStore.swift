import Foundation
import GRDB

/// The deployment-service's own state, in an SQLite file it owns: the services deployed (with their
/// manifests), the backup history with each run's outcome, and the restore history.
public final class DeploymentStore: Sendable {
    let pool: DatabasePool
    public let path: String

    /// Opens (creating and migrating) the store at `path`.
    public init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE services (
                  name TEXT PRIMARY KEY, kind TEXT NOT NULL, contract INTEGER NOT NULL, depends_on TEXT NOT NULL,
                  manifest TEXT NOT NULL, source_path TEXT NOT NULL, updated_at INTEGER NOT NULL);
                CREATE TABLE backups (
                  id TEXT PRIMARY KEY, state TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER,
                  error TEXT NOT NULL DEFAULT '', bytes INTEGER NOT NULL DEFAULT 0, fingerprint TEXT NOT NULL DEFAULT '',
                  result TEXT NOT NULL DEFAULT '{}', deleted INTEGER NOT NULL DEFAULT 0);
                CREATE TABLE restores (
                  id TEXT PRIMARY KEY, backup_id TEXT NOT NULL, short_state TEXT NOT NULL, long_state TEXT NOT NULL,
                  started_at INTEGER NOT NULL, finished_at INTEGER, error TEXT NOT NULL DEFAULT '');
                """)
        }
        try migrator.migrate(pool)
    }

    /// One service as deployed.
    public struct Service: Sendable, Equatable {
        public var name: String
        public var kind: String
        public var contract: Bool
        public var dependsOn: [String]
        /// The manifest file's text.
        public var manifest: String
        public var sourcePath: String
    }

    /// Replaces the deployed services with `services`.
    public func recordServices(_ services: [Service]) throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try pool.write { db in
            try db.execute(sql: "DELETE FROM services")
            for s in services {
                try db.execute(
                    sql: "INSERT INTO services (name, kind, contract, depends_on, manifest, source_path, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    arguments: [s.name, s.kind, s.contract, s.dependsOn.joined(separator: ","), s.manifest, s.sourcePath, now])
            }
        }
    }

    public func services() throws -> [Service] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM services ORDER BY name").map { row in
                let deps: String = row["depends_on"]
                return Service(name: row["name"], kind: row["kind"], contract: row["contract"],
                               dependsOn: deps.split(separator: ",").map(String.init), manifest: row["manifest"],
                               sourcePath: row["source_path"])
            }
        }
    }

    /// A backup as recorded.
    public struct Backup: Sendable, Equatable {
        public var id: String
        public var state: String
        public var startedAt: Int64
        public var finishedAt: Int64?
        public var error: String
        public var bytes: Int64
        public var fingerprint: String
        /// backup-result.json's text.
        public var result: String
    }

    public func insertBackup(id: String, startedAt: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO backups (id, state, started_at) VALUES (?, 'in_progress', ?)", arguments: [id, startedAt])
        }
    }

    public func finishBackup(id: String, state: String, finishedAt: Int64, error: String, bytes: Int64, fingerprint: String, result: String) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE backups SET state = ?, finished_at = ?, error = ?, bytes = ?, fingerprint = ?, result = ? WHERE id = ?",
                arguments: [state, finishedAt, error, bytes, fingerprint, result, id])
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

    /// True when the id was ever used (deleted ones included): ids are never reused.
    public func backupIDUsed(_ id: String) throws -> Bool {
        try pool.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM backups WHERE id = ?)", arguments: [id]) ?? false }
    }

    public func markDeleted(_ id: String) throws {
        try pool.write { db in try db.execute(sql: "UPDATE backups SET deleted = 1 WHERE id = ?", arguments: [id]) }
    }

    /// Backups left `in_progress` by a deployment-service that died: marked failed at start.
    public func failInterrupted() throws -> [String] {
        try pool.write { db in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM backups WHERE state = 'in_progress'")
            try db.execute(
                sql: "UPDATE backups SET state = 'failed', error = 'the deployment-service stopped while it ran', finished_at = ? WHERE state = 'in_progress'",
                arguments: [Int64(Date().timeIntervalSince1970 * 1000)])
            return ids
        }
    }

    public func recordRestore(id: String, backupID: String, shortState: String, longState: String, startedAt: Int64, finishedAt: Int64?, error: String) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO restores (id, backup_id, short_state, long_state, started_at, finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET short_state = excluded.short_state, long_state = excluded.long_state,
                      finished_at = excluded.finished_at, error = excluded.error
                    """,
                arguments: [id, backupID, shortState, longState, startedAt, finishedAt, error])
        }
    }

    /// A consistent copy of the whole store, made with SQLite's online backup API while it is in use.
    public func copy(to destination: String) throws {
        unlink(destination)
        let target = try DatabaseQueue(path: destination)
        try pool.backup(to: target)
        try target.close()
    }

    /// Replaces the whole store with the copy at `path` (a backup's `state.sqlite`), then marks the
    /// restored backup completed and any other backup the copy caught running as failed.
    public func replace(with path: String, restoredBackup: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let source = try DatabaseQueue(path: path, configuration: configuration)
        try source.backup(to: pool)
        try source.close()
        try pool.write { db in
            try db.execute(sql: "UPDATE backups SET state = 'completed' WHERE id = ?", arguments: [restoredBackup])
            try db.execute(
                sql: "UPDATE backups SET state = 'failed', error = 'caught running by the backup of its store' WHERE state = 'in_progress'")
        }
    }

    static func backup(_ row: Row) -> Backup {
        Backup(id: row["id"], state: row["state"], startedAt: row["started_at"], finishedAt: row["finished_at"],
               error: row["error"], bytes: row["bytes"], fingerprint: row["fingerprint"], result: row["result"])
    }
}
