import ArtifactStorage
import DataTools
import Foundation
import S3Client
import ServiceSettings

/// Where the pg-sidecar works: its socket, the repository (S3), the PostgreSQL server and its tools.
public struct PGSidecarConfig: Sendable {
    public var socketPath: String
    public var s3: S3Client
    public var bucket: String
    public var server: PGServer
    /// `<root>/<major>/bin/pg_dump` is used: the server's own major version.
    public var pgBinRoot: String = "/usr/lib/postgresql"
    public var zstdLevel: Int32 = 1
    public var partSize: Int = 8 << 20
    /// `maintenance_work_mem` of the sessions pg_restore opens (they build the indexes).
    public var restoreMaintenanceWorkMem = "256MB"
    /// Sessions that load a custom archive's table data at once (1: one pg_restore reads the archive);
    /// also pg_restore's `-j` for the indexes and constraints.
    public var restoreConnections = min(4, max(2, ProcessInfo.processInfo.activeProcessorCount))
    /// The service whose user may archive and fetch WAL (the database server's `archive_command` and
    /// `restore_command` run as it).
    public var walSource = "automate-postgresql"
    /// The passphrase of a chunked repository (`AUTOMATE_BACKUP_PASSPHRASE_FILE`, written by the supervisor).
    public var passphrase: ArtifactRepository.PassphraseSource?
    /// The folder a recovery's WAL files are handed to `automate-wal fetch` through (``WALHandoff``):
    /// `wal-handoff/` in the service's data folder (`AUTOMATE_SERVICE_DATA`, which its manifest shares with
    /// the database server's user). nil: they go through the socket.
    public var walHandoffFolder: String?

    public init(socketPath: String, s3: S3Client, bucket: String, server: PGServer) {
        self.socketPath = socketPath
        self.s3 = s3
        self.bucket = bucket
        self.server = server
    }

    /// From the service's settings (``ServiceSettings``): `AUTOMATE_SERVICE_SOCKET`, the repository
    /// (`[config]` `s3_*` or the gateway) and the `[config]` keys `pg_host` (socket dir, default the run
    /// directory), `pg_port`, `pg_user`, `pg_bin_root`, `zstd_level` (1-19), `part_size_mib` (5-5120),
    /// `restore_maintenance_work_mem` (a PostgreSQL memory size: `256MB`, `1GB`), `restore_connections`
    /// (1-16; default the number of cores between 2 and 4), `wal_source` (the service whose user may
    /// archive WAL), and `AUTOMATE_SERVICE_DATA` for the WAL hand-off folder. A value that does not
    /// parse is an error naming it.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> PGSidecarConfig {
        let settings = ServiceSettings(env)
        let socket = try settings.required("AUTOMATE_SERVICE_SOCKET")
        let repository = try settings.repository()
        let host = settings.string("pg_host") ?? settings.variable("AUTOMATE_RUN_DIR") ?? "/tmp"
        var c = PGSidecarConfig(
            socketPath: socket, s3: repository.client, bucket: repository.bucket,
            server: PGServer(host: host, port: try settings.int("pg_port", in: 1...65535) ?? 5432, user: settings.string("pg_user") ?? "automate"))
        if let r = settings.string("pg_bin_root") { c.pgBinRoot = r }
        if let l = try settings.int("zstd_level", in: 1...19) { c.zstdLevel = Int32(l) }
        if let p = try settings.int("part_size_mib", in: 5...5120) { c.partSize = p << 20 }
        if let m = try settings.matching("restore_maintenance_work_mem", /[1-9][0-9]{0,6}(?:kB|MB|GB)/, "a PostgreSQL memory size such as 256MB or 1GB") {
            c.restoreMaintenanceWorkMem = m
        }
        if let n = try settings.int("restore_connections", in: 1...16) { c.restoreConnections = n }
        if let source = settings.string("wal_source") { c.walSource = source }
        c.passphrase = ArtifactRepository.passphraseSource(environment: env)
        if let data = settings.variable("AUTOMATE_SERVICE_DATA"), !data.isEmpty { c.walHandoffFolder = data + "/wal-handoff" }
        return c
    }
}
