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

    public init(service: String, backupID: String, startedAt: String? = nil, finishedAt: String? = nil,
                versions: [String: String] = [:], artifacts: [ArtifactRecord]) {
        self.format = Self.currentFormat
        self.service = service
        self.backupID = backupID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.versions = versions
        self.artifacts = artifacts
    }

    enum CodingKeys: String, CodingKey {
        case format, service, versions, artifacts
        case backupID = "backup_id"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
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

    public init(path: String, size: UInt64, sha256: String, format: String, items: UInt64? = nil) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.format = format
        self.items = items
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
