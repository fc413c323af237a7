import ArtifactStorage
import BackupContract
import Foundation
import S3Client
import ServiceSettings

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
    /// The repository as file archives write it (plain or chunked) and restores read it; one per
    /// process, so a chunked repository's key is derived once.
    public var artifacts: ArtifactRepository

    /// `passphrase`: a chunked repository's (nil: only plain repositories can be used).
    public init(s3: S3Client, bucket: String, pgSidecarSocket: String, esSidecarSocket: String,
                passphrase: ArtifactRepository.PassphraseSource? = nil) {
        self.s3 = s3
        self.bucket = bucket
        self.pgSidecarSocket = pgSidecarSocket
        self.esSidecarSocket = esSidecarSocket
        artifacts = ArtifactRepository(s3: s3, bucket: bucket, passphrase: passphrase)
    }

    /// From the service's settings (``ServiceSettings``): the gateway (`AUTOMATE_GATEWAY_ENDPOINT`,
    /// `_REGION`, `_BUCKET`, and `_CREDENTIALS_FILE`, the key pair's file), `AUTOMATE_RUN_DIR` (the sidecars'
    /// sockets live there), the `[config]` key `zstd_level` (1-19), the restore it is held for, and a
    /// chunked repository's passphrase (`AUTOMATE_BACKUP_PASSPHRASE_FILE`).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> KitConfig {
        let settings = ServiceSettings(env)
        let gatewayHint = "give the service `[backup] gateway = true` in its manifest"
        let endpoint = try settings.required("AUTOMATE_GATEWAY_ENDPOINT", hint: gatewayHint)
        let keyFile = try settings.required("AUTOMATE_GATEWAY_CREDENTIALS_FILE", hint: gatewayHint)
        let credentials = try ServiceSettings.loadCredentials(keyFile, service: settings.service)
        let runDir = try settings.required("AUTOMATE_RUN_DIR", hint: "is the service started by automate-supervisor?")
        var config = KitConfig(
            s3: S3Client(endpoint: endpoint, region: settings.variable("AUTOMATE_GATEWAY_REGION") ?? "us-east-1",
                         credentials: credentials),
            bucket: settings.variable("AUTOMATE_GATEWAY_BUCKET") ?? "backups",
            pgSidecarSocket: runDir + "/pg-sidecar-service.sock", esSidecarSocket: runDir + "/es-sidecar-service.sock",
            passphrase: ArtifactRepository.passphraseSource(environment: env))
        if let level = try settings.int("zstd_level", in: 1...19) { config.zstdLevel = Int32(level) }
        config.hold = RestoreHold(environment: env)
        return config
    }
}
