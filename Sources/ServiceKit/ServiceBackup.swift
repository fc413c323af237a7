import ArtifactStorage
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
        // One session for the file archives (opened only when there are any): they dedup against each other.
        let session: ArtifactWriteSession? = owned.paths.isEmpty ? nil : try await runBlocking("automate.session") { _ in
            try config.artifacts.writeSession(purpose: "backup \(backupID) of \(service)'s files", compressionLevel: config.zstdLevel)
        }
        defer { session?.close() }
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
                    let metaKey = prefix + "pg_data/metadata.json"
                    let bytes = try await config.s3.getObject(bucket: config.bucket, key: metaKey)
                    // A chunked dump's chunks are in the sidecar's metadata: copied here, so that this
                    // metadata.json alone names everything the backup needs.
                    let sidecarMeta: PGBackupMetadata
                    do { sidecarMeta = try JSONDecoder().decode(PGBackupMetadata.self, from: Data(bytes)) } catch {
                        throw KitError(.failed, "\(metaKey) does not parse: \(error)")
                    }
                    var records: [ArtifactRecord] = try status.databases.map { db in
                        guard let dumped = sidecarMeta.databases.first(where: { $0.key == db.key }) else {
                            throw KitError(.failed, "\(metaKey) does not list \(db.key)")
                        }
                        let chunks = dumped.chunks
                        return ArtifactRecord(
                            path: String(db.key.dropFirst(prefix.count)), size: UInt64(db.size), sha256: db.sha256,
                            format: chunks == nil ? "pg_dump_custom_zstd" : "pg_dump_custom_chunked",
                            items: UInt64(db.tables.reduce(0) { $0 + max(0, $1.rows) }), chunks: chunks)
                    }
                    records.append(ArtifactRecord(path: "pg_data/metadata.json", size: UInt64(bytes.count), sha256: Checksum.sha256(bytes), format: "pg_sidecar_metadata"))
                    return (records, ["postgresql": status.serverVersion])
                }
            }
            if owned.cluster {
                group.addTask {
                    context.report(item: "pg_base") { $0.phase = .transferring; $0.step = "copying the cluster" }
                    let status = try await calls.pgOperation(start: { client in
                        var req = Automate_Sidecar_Pg_PGCreateBaseBackupRequest()
                        req.backupID = backupID; req.service = service
                        return try await client.call(PGSidecarService.createBaseBackup, req, timeout: .seconds(120)).operationID
                    }, update: { s in
                        let done = s.bytesDone, total = s.bytesTotal, completed = s.phase == .completed
                        context.report(item: "pg_base") { p in
                            p.bytesDone = max(0, done); p.bytesTotal = max(0, total)
                            if completed { p.phase = .done; p.step = "done" }
                        }
                    })
                    if status.databases.contains(where: { $0.step.hasPrefix("skipped") }) {
                        context.report(item: "pg_base") { $0.phase = .done; $0.step = "skipped: WAL archiving is off" }
                        return ([], ["point_in_time_recovery": "off (archive_mode)"])
                    }
                    let metaKey = prefix + "pg_base/metadata.json"
                    let bytes = try await config.s3.getObject(bucket: config.bucket, key: metaKey)
                    let base: PGBaseBackupMetadata
                    do { base = try JSONDecoder().decode(PGBaseBackupMetadata.self, from: Data(bytes)) } catch {
                        throw KitError(.failed, "\(metaKey) does not parse: \(error)")
                    }
                    let records = [
                        ArtifactRecord(
                            path: String(base.key.dropFirst(prefix.count)), size: UInt64(base.size), sha256: base.sha256,
                            format: base.chunks == nil ? "pg_basebackup_tar_zstd" : "pg_basebackup_tar_chunked", items: 0, chunks: base.chunks),
                        ArtifactRecord(path: "pg_base/metadata.json", size: UInt64(bytes.count), sha256: Checksum.sha256(bytes), format: "pg_base_metadata"),
                    ]
                    return (records, ["postgresql": status.serverVersion, "postgresql_cluster": base.cluster, "wal_start": base.startWAL, "wal_stop": base.stopWAL])
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
                    let manifestKey = "automate-elasticsearch-data/\(service)/\(backupID)/manifest.json"
                    let bytes = try await config.s3.getObject(bucket: config.bucket, key: manifestKey)
                    let chunks = try Self.exportChunks(manifest: bytes, key: manifestKey)
                    var records: [ArtifactRecord] = status.indices.map { i in
                        ArtifactRecord(path: relative + i.index + ".ndjson", size: UInt64(max(0, i.size)), sha256: i.sha256,
                                       format: "ndjson_export", items: UInt64(max(0, i.docsTotal)), chunks: chunks[i.index])
                    }
                    records.append(ArtifactRecord(path: relative + "manifest.json", size: UInt64(bytes.count), sha256: Checksum.sha256(bytes), format: "es_export_manifest"))
                    return (records, ["search_mode": status.mode])
                }
            }
            for owned in owned.paths {
                guard let session else { break }
                group.addTask {
                    let archiver = FileArchiver(partSize: config.partSize, zstdLevel: config.zstdLevel)
                    let part = "files/" + owned.name
                    let estimate = Int64(Self.diskUsage(owned.path))
                    context.report(item: part) { $0.phase = .transferring; $0.step = "archiving"; $0.bytesTotal = estimate }
                    let result = try await runBlocking("automate.archive") { job in
                        try archiver.archive(path: owned.path, key: prefix + "files/\(owned.name).tar", session: session, progress: { sink in
                            let raw = Int64(sink.rawBytes), new = String(sink.newBytes), reused = String(sink.reusedBytes)
                            context.report(item: part) { $0.bytesDone = raw; $0.details["new_bytes"] = new; $0.details["reused_bytes"] = reused }
                        }, job: job)
                    }
                    let raw = Int64(result.rawBytes), entries = Int64(result.entries)
                    let new = String(result.stored.newBytes), reused = String(result.stored.reusedBytes)
                    context.report(item: part) { p in
                        p.phase = .done; p.step = "done"; p.bytesDone = raw; p.bytesTotal = raw; p.itemsDone = entries; p.itemsTotal = entries
                        p.details["new_bytes"] = new; p.details["reused_bytes"] = reused
                    }
                    let chunked = result.stored.chunks != nil
                    return ([ArtifactRecord(path: "files/\(owned.name).tar" + (chunked ? "" : ".zst"), size: result.size, sha256: result.sha256,
                                            format: chunked ? "tar_chunked" : "tar_zstd", items: result.entries, chunks: result.stored.chunks)], [:])
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
        // A chunked repository's new chunks are indexed now, before metadata.json names them.
        if let session { try await runBlocking("automate.commit") { _ in try session.commit() } }
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

    /// Index name → chunks, from a search export's manifest.json (chunked exports only).
    static func exportChunks(manifest: [UInt8], key: String) throws -> [String: ChunkRecord] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(manifest)) as? [String: Any] else {
            throw KitError(.failed, "\(key) is not a JSON object")
        }
        var out: [String: ChunkRecord] = [:]
        for index in object["indices"] as? [[String: Any]] ?? [] {
            guard let name = index["name"] as? String, let chunks = index["chunks"] else { continue }
            guard let record = ChunkRecord(jsonObject: chunks) else {
                throw KitError(.failed, "\(key): the chunks of index \(name) do not decode")
            }
            out[name] = record
        }
        return out
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
