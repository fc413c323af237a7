import AutomateRPC
import BackupContract
import BackupRepository
import Foundation
import PGSidecar
import S3Client
import SidecarProto
#if canImport(Glibc)
import Glibc
#endif

/// Backs up what one service owns under a backup id: databases through the pg-sidecar, indices through
/// the es-sidecar and declared paths as zstd tarballs, all at once; then writes
/// `<backup-id>/<service>/metadata.json` (last) listing every artifact with its size and sha256.
public struct ServiceBackup: Sendable {
    public let service: String
    public let owned: OwnedData
    public let config: KitConfig

    public init(service: String, owned: OwnedData, config: KitConfig) {
        self.service = service
        self.owned = owned
        self.config = config
    }

    /// `<backup-id>/<service>/`.
    public func prefix(_ backupID: String) -> String { "\(backupID)/\(service)/" }

    /// Runs the backup; `progress` sees the combined progress. Returns the metadata it wrote.
    public func run(backupID: String, progress: @escaping @Sendable (BackupProgress) -> Void) async throws -> ServiceMetadata {
        let started = Date()
        let board = ProgressBoard(listener: progress)
        let calls = SidecarCalls(config: config)
        let service = self.service, prefix = self.prefix(backupID), config = self.config, owned = self.owned
        let collected = try await withThrowingTaskGroup(of: ([ArtifactRecord], [String: String]).self) { group in
            if !owned.databases.isEmpty {
                group.addTask {
                    board.update("pg") { $0.phase = "dumping" }
                    let status = try await calls.pgOperation(start: { client in
                        var req = Automate_Sidecar_Pg_PGCreateBackupRequest()
                        req.backupID = backupID; req.service = service; req.databases = owned.databases
                        return try await client.unary("CreateBackup", req, as: Automate_Sidecar_Pg_PGOperation.self, timeout: .seconds(120)).operationID
                    }, update: { s in
                        board.update("pg") { p in
                            p.bytesDone = UInt64(max(0, s.bytesDone)); p.bytesTotal = UInt64(max(0, s.bytesTotal))
                            p.phase = s.phase == .completed ? "done" : "dumping"
                        }
                    })
                    var records: [ArtifactRecord] = status.databases.map { db in
                        ArtifactRecord(
                            path: String(db.key.dropFirst(prefix.count)), size: UInt64(db.size), sha256: db.sha256,
                            format: "pg_dump_custom_zstd", items: UInt64(db.tables.reduce(0) { $0 + max(0, $1.rows) }))
                    }
                    let metaKey = prefix + "pg_data/metadata.json"
                    let bytes = try await config.s3.getObject(bucket: config.bucket, key: metaKey)
                    records.append(ArtifactRecord(path: "pg_data/metadata.json", size: UInt64(bytes.count), sha256: Checksum.sha256(bytes), format: "pg_sidecar_metadata"))
                    return (records, ["postgresql": status.serverVersion])
                }
            }
            if !owned.indices.isEmpty {
                group.addTask {
                    board.update("es") { $0.phase = "exporting" }
                    let status = try await calls.esOperation(start: { client in
                        var req = Automate_Sidecar_Es_ESCreateSnapshotRequest()
                        req.service = service; req.snapshot = backupID; req.indices = owned.indices
                        return try await client.unary("CreateSnapshot", req, as: Automate_Sidecar_Es_ESOperation.self, timeout: .seconds(120)).operationID
                    }, update: { s in
                        board.update("es") { p in
                            p.itemsDone = UInt64(s.indices.reduce(0) { $0 + max(0, $1.docsDone) })
                            p.itemsTotal = UInt64(s.indices.reduce(0) { $0 + max(0, $1.docsTotal) })
                            p.phase = s.phase == .completed ? "done" : "exporting"
                        }
                    }, done: { $0.phase == .completed })
                    guard status.mode == "export" else {
                        // Snapshot mode: the cluster wrote the snapshot itself; record it without per-file sums.
                        return ([], ["search_mode": status.mode])
                    }
                    let relative = "../../automate-elasticsearch-data/\(service)/\(backupID)/"
                    var records: [ArtifactRecord] = status.indices.map { i in
                        ArtifactRecord(path: relative + i.index + ".ndjson", size: UInt64(max(0, i.size)), sha256: i.sha256,
                                       format: "ndjson_export", items: UInt64(max(0, i.docsTotal)))
                    }
                    let manifestKey = "automate-elasticsearch-data/\(service)/\(backupID)/manifest.json"
                    let bytes = try await config.s3.getObject(bucket: config.bucket, key: manifestKey)
                    records.append(ArtifactRecord(path: relative + "manifest.json", size: UInt64(bytes.count), sha256: Checksum.sha256(bytes), format: "es_export_manifest"))
                    return (records, ["search_mode": status.mode])
                }
            }
            for owned in owned.paths {
                group.addTask {
                    let archiver = FileArchiver(s3: config.s3, bucket: config.bucket, partSize: config.partSize, zstdLevel: config.zstdLevel)
                    let part = "files/" + owned.name
                    board.update(part) { $0.phase = "archiving"; $0.bytesTotal = Self.diskUsage(owned.path) }
                    let cancelled = CancelFlag()
                    let result = try await withTaskCancellationHandler {
                        try await runOnOwnThread(name: "automate.archive") {
                            try archiver.archive(path: owned.path, to: prefix + "files/\(owned.name).tar.zst",
                                                 progress: { n in board.update(part) { $0.bytesDone = n } },
                                                 isCancelled: { cancelled.isSet })
                        }
                    } onCancel: { cancelled.set() }
                    board.update(part) { $0.phase = "done"; $0.bytesDone = result.rawBytes; $0.bytesTotal = result.rawBytes }
                    return ([ArtifactRecord(path: "files/\(owned.name).tar.zst", size: result.size, sha256: result.sha256,
                                            format: "tar_zstd", items: result.entries)], [:])
                }
            }
            var artifacts: [ArtifactRecord] = []
            var versions: [String: String] = [:]
            for try await (records, v) in group {
                artifacts += records
                versions.merge(v) { $1 }
            }
            return (artifacts, versions)
        }
        try Task.checkCancellation()
        var versions = collected.1
        versions["automate-service-kit"] = "1"
        let metadata = ServiceMetadata(
            service: service, backupID: backupID, startedAt: iso8601(started), finishedAt: iso8601(Date()),
            versions: versions, artifacts: collected.0.sorted { $0.path < $1.path })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try await config.s3.putObject(bucket: config.bucket, key: prefix + "metadata.json", bytes: Array(try encoder.encode(metadata)),
                                      contentType: "application/json")
        return metadata
    }

    /// Bytes of the regular files below `path` (the progress total for its archive).
    static func diskUsage(_ path: String) -> UInt64 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { return UInt64(info.st_size) }
        var total: UInt64 = 0
        let walker = FileManager.default.enumerator(atPath: path)
        while let relative = walker?.nextObject() as? String {
            if lstat(path + "/" + relative, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { total += UInt64(info.st_size) }
        }
        return total
    }
}

/// A flag set from a cancellation handler and read by blocking work.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

func iso8601(_ date: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}

public func unixMillis(_ date: Date = Date()) -> Int64 { Int64(date.timeIntervalSince1970 * 1000) }
