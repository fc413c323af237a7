import ArtifactStorage
import Foundation
import S3Client
import ServiceSettings

/// How the es-sidecar saves indices: documents exported as NDJSON through S3 (the stack's own engine), or
/// the cluster's `_snapshot` API (a real Elasticsearch/OpenSearch cluster).
public enum ESMode: String, Sendable {
    case export
    case snapshot
}

public struct ESSidecarConfig: Sendable {
    public var socketPath: String
    public var searchURL: String
    public var mode: ESMode
    public var s3: S3Client
    public var bucket: String
    /// Snapshot mode: the engine's s3 client name (`s3.client.<name>.*` in its config/keystore).
    public var s3ClientName: String = "automate"
    public var partSize: Int = 8 << 20
    /// The passphrase of a chunked repository (`AUTOMATE_BACKUP_PASSPHRASE_FILE`, written by the supervisor).
    public var passphrase: ArtifactRepository.PassphraseSource?

    public init(socketPath: String, searchURL: String, mode: ESMode, s3: S3Client, bucket: String) {
        self.socketPath = socketPath
        self.searchURL = searchURL
        self.mode = mode
        self.s3 = s3
        self.bucket = bucket
    }

    /// From the service's settings (``ServiceSettings``): `AUTOMATE_SERVICE_SOCKET`, the repository
    /// (`[config]` `s3_*` or the gateway) and the `[config]` keys `search_url`, `mode` (export | snapshot;
    /// default export, snapshot when `external` is true), `s3_client_name`, `part_size_mib` (5-5120). A
    /// value that does not parse is an error naming it.
    /// The CA and credentials of a cluster outside the stack (`config/external.toml`).
    public var searchAccess = SearchEngine.Access()

    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> ESSidecarConfig {
        let settings = ServiceSettings(env)
        let socket = try settings.required("AUTOMATE_SERVICE_SOCKET")
        guard let url = settings.string("search_url") else {
            throw SettingsError(.missing, "config search_url of \(settings.service) is not set: give it the search engine's URL")
        }
        let external = try settings.bool("external") ?? false
        let mode = ESMode(rawValue: try settings.choice("mode", ["export", "snapshot"]) ?? (external ? "snapshot" : "export"))!
        let repository = try settings.repository()
        var c = ESSidecarConfig(socketPath: socket, searchURL: url, mode: mode, s3: repository.client, bucket: repository.bucket)
        if let n = settings.string("s3_client_name") { c.s3ClientName = n }
        if let p = try settings.int("part_size_mib", in: 5...5120) { c.partSize = p << 20 }
        c.passphrase = ArtifactRepository.passphraseSource(environment: env)
        c.searchAccess = try SearchEngine.Access(environment: env)
        return c
    }
}
