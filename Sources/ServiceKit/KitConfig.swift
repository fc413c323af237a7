import BackupContract
import Foundation
import S3Client

/// Where a service's backups go and which sidecars do the work: read from the environment the
/// supervisor gives a service whose manifest says `[backup] gateway = true`.
public struct KitConfig: Sendable {
    /// The backup gateway (or another S3 endpoint) and the bucket that is the repository.
    public var s3: S3Client
    public var bucket: String
    /// `pg-sidecar-service.sock` in the run directory.
    public var pgSidecarSocket: String
    /// `es-sidecar-service.sock` in the run directory.
    public var esSidecarSocket: String
    /// Multipart part size for file archives.
    public var partSize: Int = 8 << 20
    /// zstd level for file archives.
    public var zstdLevel: Int32 = 1
    /// How long a sidecar may stay unreachable before the operation fails.
    public var sidecarTimeout: Duration = .seconds(30)
    /// The restore this service was started for (`AUTOMATE_RESTORE_ID`): it is held down until that
    /// restore's short-term part is done. Nil for a normal start.
    public var hold: RestoreHold?

    public init(s3: S3Client, bucket: String, pgSidecarSocket: String, esSidecarSocket: String) {
        self.s3 = s3
        self.bucket = bucket
        self.pgSidecarSocket = pgSidecarSocket
        self.esSidecarSocket = esSidecarSocket
    }

    /// From `AUTOMATE_GATEWAY_ENDPOINT`, `_REGION`, `_BUCKET`, `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY` and
    /// `AUTOMATE_RUN_DIR` (the sidecars' sockets live there).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> KitConfig {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let endpoint = value("AUTOMATE_GATEWAY_ENDPOINT"), let id = value("AUTOMATE_GATEWAY_ACCESS_KEY_ID"),
              let secret = value("AUTOMATE_GATEWAY_SECRET_ACCESS_KEY") else {
            throw KitError(.configuration, 
                "AUTOMATE_GATEWAY_ENDPOINT and the gateway key pair are not set: give the service `[backup] gateway = true` in its manifest")
        }
        guard let runDir = value("AUTOMATE_RUN_DIR") else {
            throw KitError(.configuration, "AUTOMATE_RUN_DIR is not set (is the service started by automate-supervisor?)")
        }
        var config = KitConfig(
            s3: S3Client(endpoint: endpoint, region: value("AUTOMATE_GATEWAY_REGION") ?? "us-east-1",
                         credentials: S3Credentials(accessKeyID: id, secretAccessKey: secret)),
            bucket: value("AUTOMATE_GATEWAY_BUCKET") ?? "backups",
            pgSidecarSocket: runDir + "/pg-sidecar-service.sock", esSidecarSocket: runDir + "/es-sidecar-service.sock")
        if let level = value("AUTOMATE_CFG_ZSTD_LEVEL").flatMap(Int32.init) { config.zstdLevel = min(max(level, 1), 19) }
        config.hold = RestoreHold(environment: env)
        return config
    }
}
