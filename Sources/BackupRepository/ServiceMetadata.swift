import ChunkStore
import Foundation

/// `<backup-id>/<service>/metadata.json`: what one service backed up. Written last by the service (or
/// by the deployment-service on its behalf), after every artifact it lists.
public struct ServiceMetadata: Codable, Sendable, Equatable {
    /// `automate-backup-metadata/1`.
    public static let currentFormat = "automate-backup-metadata/1"

    public var format: String
    public var service: String
    public var backupID: String
    public var startedAt: String?
    public var finishedAt: String?
    /// Versions of what made the artifacts (e.g. `"postgresql": "15.18"`).
    public var versions: [String: String]
    public var artifacts: [ArtifactRecord]
    /// The deployment-service's own metadata.json only: the services present at backup time.
    public var deployment: [DeployedServiceRecord]?

    public init(service: String, backupID: String, startedAt: String? = nil, finishedAt: String? = nil,
                versions: [String: String] = [:], artifacts: [ArtifactRecord], deployment: [DeployedServiceRecord]? = nil) {
        self.format = Self.currentFormat
        self.service = service
        self.backupID = backupID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.versions = versions
        self.artifacts = artifacts
        self.deployment = deployment
    }

    enum CodingKeys: String, CodingKey {
        case format, service, versions, artifacts, deployment
        case backupID = "backup_id"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
    }
}

/// One service present at backup time, as the deployment-service recorded it.
public struct DeployedServiceRecord: Codable, Sendable, Equatable {
    public var name: String
    /// `infrastructure`, `gateway`, `sidecar`, `orchestrator` or `domain`.
    public var kind: String
    /// True when it implements the backup contract itself.
    public var contract: Bool
    public var dependsOn: [String]
    /// Its manifest as deployed, relative to the deployment-service's folder (`manifests/<name>.toml`).
    public var manifest: String
    /// What its `[backup]` table declared (paths as expanded at backup time).
    public var databases: [String]
    public var indices: [String]
    public var paths: [String]

    public init(name: String, kind: String, contract: Bool, dependsOn: [String], manifest: String,
                databases: [String], indices: [String], paths: [String]) {
        self.name = name
        self.kind = kind
        self.contract = contract
        self.dependsOn = dependsOn
        self.manifest = manifest
        self.databases = databases
        self.indices = indices
        self.paths = paths
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, contract, manifest, databases, indices, paths
        case dependsOn = "depends_on"
    }
}

/// One file a service's backup wrote.
public struct ArtifactRecord: Codable, Sendable, Equatable {
    /// Relative to the service's folder, e.g. `pg_data/teams.fc.zst`.
    public var path: String
    public var size: UInt64
    /// Lower-case hex.
    public var sha256: String
    /// `pg_dump_custom_zstd`, `pg_plain_sql`, `tar_zstd`, `tar_gzip`, `ndjson_export`, ...
    public var format: String
    /// Rows, documents or entries it holds (checked after restore).
    public var items: UInt64?
    /// In a chunked repository: the artifact's chunks (nothing is stored at ``path``; ``size`` is the
    /// artifact's own, before compression, and ``sha256`` holds the chunk record's keyed digest, which a
    /// restore checks). Nil for a plain artifact.
    public var chunks: ChunkStore.ArtifactRecord?

    public init(path: String, size: UInt64, sha256: String, format: String, items: UInt64? = nil, chunks: ChunkStore.ArtifactRecord? = nil) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.format = format
        self.items = items
        self.chunks = chunks
    }
}

/// `<backup-id>/checksums.json`: the sha256 of every service's metadata.json. Its own sha256 is the
/// backup's fingerprint.
public struct Checksums: Codable, Sendable, Equatable {
    public static let currentFormat = "automate-backup-checksums/1"
    public var format: String
    public var backupID: String
    /// `<service>/metadata.json` → sha256.
    public var files: [String: String]

    public init(backupID: String, files: [String: String]) {
        self.format = Self.currentFormat
        self.backupID = backupID
        self.files = files
    }

    enum CodingKeys: String, CodingKey {
        case format, files
        case backupID = "backup_id"
    }
}
