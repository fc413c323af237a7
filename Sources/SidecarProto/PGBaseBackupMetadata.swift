import ChunkStore
import Foundation

/// What the pg-sidecar writes to `<backup_id>/<service>/pg_base/metadata.json` after a base backup: where
/// the cluster's copy is, and the WAL positions a recovery from it starts and must at least reach.
public struct PGBaseBackupMetadata: Codable, Sendable, Equatable {
    public var formatVersion = 1
    public var backupID: String
    public var service: String
    /// The cluster's system identifier: the folder of its WAL archive.
    public var cluster: String
    public var serverVersion: String
    /// The timeline the backup was taken on.
    public var timeline: UInt32
    /// WAL positions (`0/2000028`): the backup's start, and its end (the earliest consistent point).
    public var startLSN: String
    public var stopLSN: String
    /// The WAL segments holding them: a recovery needs every archived segment from `startWAL` on.
    public var startWAL: String
    public var stopWAL: String
    public var startedAt: String
    public var finishedAt: String
    /// The tar's key (plain: the zstd object; chunked: the artifact's name, nothing stored under it).
    public var key: String
    /// `tar+zstd` or `tar+chunks`.
    public var format: String
    /// Plain: the object's bytes; chunked: the tar's.
    public var size: Int64
    /// Plain: the object's SHA-256; chunked: the chunk record's keyed digest.
    public var sha256: String
    /// Bytes of the tar.
    public var tarBytes: Int64
    /// Chunked repositories: the tar's chunks.
    public var chunks: ChunkStore.ArtifactRecord?

    public init(
        backupID: String, service: String, cluster: String, serverVersion: String, timeline: UInt32, startLSN: String, stopLSN: String,
        startWAL: String, stopWAL: String, startedAt: String, finishedAt: String, key: String, format: String, size: Int64, sha256: String,
        tarBytes: Int64, chunks: ChunkStore.ArtifactRecord?
    ) {
        self.backupID = backupID; self.service = service; self.cluster = cluster; self.serverVersion = serverVersion
        self.timeline = timeline; self.startLSN = startLSN; self.stopLSN = stopLSN; self.startWAL = startWAL; self.stopWAL = stopWAL
        self.startedAt = startedAt; self.finishedAt = finishedAt; self.key = key; self.format = format; self.size = size
        self.sha256 = sha256; self.tarBytes = tarBytes; self.chunks = chunks
    }

    enum CodingKeys: String, CodingKey {
        case cluster, timeline, key, format, size, sha256, chunks, service
        case formatVersion = "format_version", backupID = "backup_id", serverVersion = "server_version"
        case startLSN = "start_lsn", stopLSN = "stop_lsn", startWAL = "start_wal", stopWAL = "stop_wal"
        case startedAt = "started_at", finishedAt = "finished_at", tarBytes = "tar_bytes"
    }
}
