import Foundation
import S3Client

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

    public init(socketPath: String, searchURL: String, mode: ESMode, s3: S3Client, bucket: String) {
        self.socketPath = socketPath
        self.searchURL = searchURL
        self.mode = mode
        self.s3 = s3
        self.bucket = bucket
    }

    /// From the service environment: `AUTOMATE_SERVICE_SOCKET`, `AUTOMATE_CFG_SEARCH_URL`, `_MODE`
    /// (export | snapshot; default export, snapshot when `_EXTERNAL` is true), `_S3_ENDPOINT`, `_S3_REGION`,
    /// `_S3_BUCKET`, `_S3_CREDENTIALS`, `_S3_CLIENT_NAME`, `_PART_SIZE_MIB`.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> ESSidecarConfig {
        func cfg(_ k: String) -> String? { env["AUTOMATE_CFG_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let socket = env["AUTOMATE_SERVICE_SOCKET"] else { throw SearchError(status: 0, message: "AUTOMATE_SERVICE_SOCKET is not set") }
        guard let url = cfg("SEARCH_URL") else { throw SearchError(status: 0, message: "config search_url is not set") }
        // The supervisor hands gateway users AUTOMATE_GATEWAY_* ([backup] gateway = true); config overrides.
        func gw(_ k: String) -> String? { env["AUTOMATE_GATEWAY_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let endpoint = cfg("S3_ENDPOINT") ?? gw("ENDPOINT") else {
            throw SearchError(status: 0, message: "no S3 endpoint: set config s3_endpoint or run with [backup] gateway = true")
        }
        let external = cfg("EXTERNAL") == "true"
        guard let mode = ESMode(rawValue: cfg("MODE") ?? (external ? "snapshot" : "export")) else {
            throw SearchError(status: 0, message: "config mode must be export or snapshot")
        }
        var creds: S3Credentials? = nil
        if let path = cfg("S3_CREDENTIALS") {
            creds = try S3Credentials.load(path: path)
        } else if let id = gw("ACCESS_KEY_ID"), let secret = gw("SECRET_ACCESS_KEY") {
            creds = S3Credentials(accessKeyID: id, secretAccessKey: secret)
        }
        var c = ESSidecarConfig(
            socketPath: socket, searchURL: url, mode: mode,
            s3: S3Client(endpoint: endpoint, region: cfg("S3_REGION") ?? gw("REGION") ?? "us-east-1", credentials: creds),
            bucket: cfg("S3_BUCKET") ?? gw("BUCKET") ?? "backups")
        if let n = cfg("S3_CLIENT_NAME") { c.s3ClientName = n }
        if let p = cfg("PART_SIZE_MIB").flatMap(Int.init) { c.partSize = max(5, p) << 20 }
        return c
    }
}
