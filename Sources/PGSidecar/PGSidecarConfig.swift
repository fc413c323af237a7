import DataTools
import Foundation
import S3Client

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
    /// `maintenance_work_mem` of the sessions pg_restore opens (index builds sort in memory up to it):
    /// PostgreSQL's 64MB default makes a restore's index builds spill to disk.
    public var restoreMaintenanceWorkMem = "256MB"

    public init(socketPath: String, s3: S3Client, bucket: String, server: PGServer) {
        self.socketPath = socketPath
        self.s3 = s3
        self.bucket = bucket
        self.server = server
    }

    /// From the service environment: `AUTOMATE_SERVICE_SOCKET` and the manifest's `[config]` values
    /// (`AUTOMATE_CFG_S3_ENDPOINT`, `_S3_REGION`, `_S3_BUCKET`, `_S3_CREDENTIALS` (file), `_PG_HOST`
    /// (socket dir), `_PG_PORT`, `_PG_USER`, `_PG_BIN_ROOT`, `_ZSTD_LEVEL`, `_PART_SIZE_MIB`,
    /// `_RESTORE_MAINTENANCE_WORK_MEM` (a PostgreSQL memory size: `256MB`, `1GB`)).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> PGSidecarConfig {
        func cfg(_ k: String) -> String? { env["AUTOMATE_CFG_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let socket = env["AUTOMATE_SERVICE_SOCKET"] else { throw PGSidecarError(.configuration, "AUTOMATE_SERVICE_SOCKET is not set") }
        // The supervisor hands gateway users AUTOMATE_GATEWAY_* ([backup] gateway = true); config overrides.
        func gw(_ k: String) -> String? { env["AUTOMATE_GATEWAY_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let endpoint = cfg("S3_ENDPOINT") ?? gw("ENDPOINT") else {
            throw PGSidecarError(.configuration, "no S3 endpoint: set config s3_endpoint or run with [backup] gateway = true")
        }
        var creds: S3Credentials? = nil
        if let path = cfg("S3_CREDENTIALS") {
            creds = try S3Credentials.load(path: path)
        } else if let id = gw("ACCESS_KEY_ID"), let secret = gw("SECRET_ACCESS_KEY") {
            creds = S3Credentials(accessKeyID: id, secretAccessKey: secret)
        }
        let host = cfg("PG_HOST") ?? env["AUTOMATE_RUN_DIR"] ?? "/tmp"
        var c = PGSidecarConfig(
            socketPath: socket, s3: S3Client(endpoint: endpoint, region: cfg("S3_REGION") ?? gw("REGION") ?? "us-east-1", credentials: creds),
            bucket: cfg("S3_BUCKET") ?? gw("BUCKET") ?? "backups",
            server: PGServer(host: host, port: Int(cfg("PG_PORT") ?? "") ?? 5432, user: cfg("PG_USER") ?? "automate"))
        if let r = cfg("PG_BIN_ROOT") { c.pgBinRoot = r }
        if let l = cfg("ZSTD_LEVEL").flatMap(Int32.init) { c.zstdLevel = min(max(l, 1), 19) }
        if let p = cfg("PART_SIZE_MIB").flatMap(Int.init) { c.partSize = max(5, p) << 20 }
        if let m = cfg("RESTORE_MAINTENANCE_WORK_MEM") {
            guard m.wholeMatch(of: /[1-9][0-9]{0,6}(kB|MB|GB)/) != nil else {
                throw PGSidecarError(.configuration, "config restore_maintenance_work_mem = \"\(m)\" is not a PostgreSQL memory size such as 256MB or 1GB")
            }
            c.restoreMaintenanceWorkMem = m
        }
        return c
    }
}
