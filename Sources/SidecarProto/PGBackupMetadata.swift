import ChunkStore
import Foundation

/// What the sidecar writes to `<backup_id>/<service>/pg_data/metadata.json`.
public struct PGBackupMetadata: Codable, Sendable {
    public struct Table: Codable, Sendable, Equatable {
        public var schema: String
        public var table: String
        public var rows: Int64

        public init(schema: String, table: String, rows: Int64) {
            self.schema = schema
            self.table = table
            self.rows = rows
        }
    }
    public struct Database: Codable, Sendable {
        public var name: String
        public var key: String
        public var format: String
        public var size: Int64
        public var sha256: String
        public var uncompressedSize: Int64
        public var tables: [Table]
        public var startedAt: String
        public var finishedAt: String
        public var encoding: String?
        public var lcCollate: String?
        public var lcCtype: String?
        /// In a chunked repository: the dump's chunks (format `custom+chunks`: nothing is stored at `key`).
        public var chunks: ChunkStore.ArtifactRecord?

        public init(
            name: String, key: String, format: String, size: Int64, sha256: String, uncompressedSize: Int64, tables: [Table],
            startedAt: String, finishedAt: String, encoding: String? = nil, lcCollate: String? = nil, lcCtype: String? = nil,
            chunks: ChunkStore.ArtifactRecord? = nil
        ) {
            self.name = name; self.key = key; self.format = format; self.size = size; self.sha256 = sha256
            self.uncompressedSize = uncompressedSize; self.tables = tables; self.startedAt = startedAt; self.finishedAt = finishedAt
            self.encoding = encoding; self.lcCollate = lcCollate; self.lcCtype = lcCtype; self.chunks = chunks
        }

        enum CodingKeys: String, CodingKey {
            case name, key, format, size, sha256, tables, encoding, chunks
            case uncompressedSize = "uncompressed_size", startedAt = "started_at", finishedAt = "finished_at"
            case lcCollate = "lc_collate", lcCtype = "lc_ctype"
        }
    }
    public var formatVersion = 1
    public var backupID: String
    public var service: String
    public var serverVersion: String
    public var dumpTool: String
    public var startedAt: String
    public var finishedAt: String
    public var databases: [Database]

    public init(
        backupID: String, service: String, serverVersion: String, dumpTool: String, startedAt: String, finishedAt: String,
        databases: [Database]
    ) {
        self.backupID = backupID; self.service = service; self.serverVersion = serverVersion; self.dumpTool = dumpTool
        self.startedAt = startedAt; self.finishedAt = finishedAt; self.databases = databases
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", backupID = "backup_id", service, serverVersion = "server_version"
        case dumpTool = "dump_tool", startedAt = "started_at", finishedAt = "finished_at", databases
    }
}
