import AutomateRPC
import BackupContract
import BackupRepository
import Foundation
import Operations
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

    /// Runs the backup, reporting to `context` one item per part (`pg`, `es`, `files/<name>`). Returns the
    /// metadata it wrote. Cancelling the calling task cancels the sidecars' operations (their tools are
    /// killed, their uploads aborted) and kills tar.
    public func run(backupID: String, context: OperationContext) async throws -> ServiceMetadata {
        let started = Date()
        context.report { $0.phase = .transferring; $0.step = "backing up" }
        let calls = SidecarCalls(config: config)
        let service = self.service, prefix = self.prefix(backupID), config = self.config, owned = self.owned
        let collected = try await withThrowingTaskGroup(of: ([ArtifactRecord], [String: String]).self) { group in
            if !owned.databases.isEmpty {
                group.addTask {
                    context.report(item: "pg") { $0.phase = .transferring; $0.step = "dumping" }
                    let status = try await calls.pgOperation(start: { client in
                        var req = Automate_Sidecar_Pg_PGCreateBackupRequest()
                        req.backupID = backupID; req.service = service; req.databases = owned.databases
                        return try await client.call(PGSidecarService.createBackup, req, timeout: .seconds(120)).operationID
                    }, update: { s in
                        let done = s.bytesDone, total = s.bytesTotal, completed = s.phase == .completed
                        context.report(item: "pg") { p in
                            p.bytesDone = max(0, done); p.bytesTotal = max(0, total)
                            if completed { p.phase = .done; p.step = "done" }
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
                    context.report(item: "es") { $0.phase = .transferring; $0.step = "exporting" }
                    let status = try await calls.esOperation(start: { client in
                        var req = Automate_Sidecar_Es_ESCreateSnapshotRequest()
                        req.service = service; req.snapshot = backupID; req.indices = owned.indices
                        return try await client.call(ESSidecarService.createSnapshot, req, timeout: .seconds(120)).operationID
                    }, update: { s in
                        let done = s.indices.reduce(0) { $0 + max(0, $1.docsDone) }
                        let total = s.indices.reduce(0) { $0 + max(0, $1.docsTotal) }
                        let completed = s.phase == .completed
                        context.report(item: "es") { p in
                            p.itemsDone = done; p.itemsTotal = total
                            if completed { p.phase = .done; p.step = "done" }
                        }
                    })
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
                    let estimate = Int64(Self.diskUsage(owned.path))
                    context.report(item: part) { $0.phase = .transferring; $0.step = "archiving"; $0.bytesTotal = estimate }
                    let result = try await runBlocking("automate.archive") { job in
                        try archiver.archive(path: owned.path, to: prefix + "files/\(owned.name).tar.zst",
                                             progress: { n in context.report(item: part) { $0.bytesDone = Int64(n) } }, job: job)
                    }
                    let raw = Int64(result.rawBytes), entries = Int64(result.entries)
                    context.report(item: part) { p in
                        p.phase = .done; p.step = "done"; p.bytesDone = raw; p.bytesTotal = raw; p.itemsDone = entries; p.itemsTotal = entries
                    }
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
        context.report { $0.phase = .finishing; $0.step = "writing metadata" }
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

func iso8601(_ date: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}

public func unixMillis(_ date: Date = Date()) -> Int64 { Int64(date.timeIntervalSince1970 * 1000) }
