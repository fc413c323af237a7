import Foundation
import GRDB

/// The deployment-service's own state, in an SQLite file it owns: the services deployed (with their
/// manifests), the backup history with each run's outcome, and the restore history. Backups and
/// restores are journaled as they change (see `DeploymentStore+Backups.swift` and
/// `DeploymentStore+Restores.swift`), so that a restarted deployment-service knows what a crash left.
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
        try Self.migrator.migrate(pool)
    }

    /// v1: services, backups, restores. v2, the journal: the services of each backup and their outcome
    /// as each ends, whether a backup's failure still has to be written to the repository, and each
    /// restore's last status.
    static var migrator: DatabaseMigrator {
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
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
                ALTER TABLE backups ADD COLUMN services TEXT NOT NULL DEFAULT '';
                ALTER TABLE backups ADD COLUMN repository_pending INTEGER NOT NULL DEFAULT 0;
                CREATE TABLE backup_services (
                  backup_id TEXT NOT NULL, service TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
                  bytes INTEGER NOT NULL DEFAULT 0, started_at INTEGER NOT NULL DEFAULT 0, finished_at INTEGER,
                  PRIMARY KEY (backup_id, service));
                ALTER TABLE restores ADD COLUMN status BLOB;
                """)
        }
        return migrator
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
        // A copy from an older version has an older schema.
        try Self.migrator.migrate(pool)
        try pool.write { db in
            try db.execute(sql: "UPDATE backups SET state = 'completed' WHERE id = ?", arguments: [restoredBackup])
            try db.execute(sql: "UPDATE backup_services SET state = 'completed' WHERE backup_id = ? AND state = 'running'", arguments: [restoredBackup])
            let reason = "caught running by the backup of its store"
            try db.execute(sql: "UPDATE backup_services SET state = 'failed', error = ? WHERE state = 'running'", arguments: [reason])
            // Flagged: the start-up reconciler writes their failure to the repository.
            try db.execute(
                sql: "UPDATE backups SET state = 'failed', error = ?, repository_pending = 1 WHERE state = 'in_progress'", arguments: [reason])
        }
    }
}
