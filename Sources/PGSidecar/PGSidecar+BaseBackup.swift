import ArtifactStorage
import AutomateRPC
import BackupRepository
import ChunkStore
import DataTools
import Foundation
import Operations
import SidecarProto
#if canImport(Glibc)
import Glibc
#endif

/// Physical base backups of the whole cluster, the starting point of a point-in-time recovery: one
/// `pg_basebackup -Ft -D - -X none` tar stream into the repository (zstd object, or chunks with the tar
/// layout, so unchanged relation files cost nothing the next time), then `pg_base/metadata.json` with the
/// cluster's system identifier and the WAL positions. pg_basebackup ends only once the server archived
/// the backup's last segment, so a completed base backup is always recoverable from the archive. With
/// archiving off none is taken (the operation completes with the item's step ``skippedStep``).
extension PGSidecar {
    /// The step of a base backup's "cluster" item when none was taken (archiving is off).
    public static let skippedStep = "skipped: archive_mode is off"

    /// Where a base backup goes.
    public func basePrefix(backupID: String, service: String) -> String { "\(backupID)/\(service)/pg_base/" }

    /// Starts a base backup; returns its operation id (follow it with WatchStatus).
    public func startBaseBackup(_ req: Automate_Sidecar_Pg_PGCreateBaseBackupRequest, caller: RPCCaller = .trusted) async throws -> String {
        guard Self.validID(req.backupID) else { throw RPCError(.invalidArgument, "backup_id \"\(req.backupID)\" is not yyyyMMddHHmmss") }
        guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
        guard case .trusted = caller else { throw RPCError(.permissionDenied, "CreateBaseBackup copies every database: trusted callers only") }
        let initial = OperationProgress(phase: .pending, items: [OperationProgress.Item(name: "cluster")])
        try Task.checkCancellation()
        return try await operations.start(
            idPrefix: "basebackup-\(req.backupID)", kind: "backup", labels: ["backup_id": req.backupID, "service": req.service], initial: initial
        ) { [self] context in
            do {
                let outcome = try await runBlocking("pg.basebackup") { job in try self.runBaseBackup(context, job, req) }
                logger.info("base backup \(context.id) completed")
                return outcome
            } catch {
                logger.error("base backup \(context.id) \(Task.isCancelled ? "cancelled" : "failed: \(error)")")
                throw error
            }
        }
    }

    /// Streams pg_basebackup's tar into the repository, then writes the metadata. On failure or
    /// cancellation nothing is left under the prefix (the upload is aborted; chunks wait for prune).
    func runBaseBackup(_ context: OperationContext, _ job: BlockingJob, _ req: Automate_Sidecar_Pg_PGCreateBaseBackupRequest) throws -> PGOutcome {
        context.report { $0.phase = .preparing; $0.step = "connecting" }
        let started = rfc3339()
        let admin = try PGConnection(config.server)
        let version = admin.serverVersion, major = admin.majorVersion
        let rows = try admin.query("SELECT system_identifier::text, current_setting('archive_mode'), pg_database_size_total FROM pg_control_system(), (SELECT sum(pg_database_size(oid))::bigint AS pg_database_size_total FROM pg_database) t")
        guard let row = rows.first, let cluster = row[0], WALArchive.isCluster(cluster) else {
            throw PGSidecarError(.server, "the server did not give its system identifier")
        }
        guard row[1] == "on" || row[1] == "always" else {
            // No archive, no recovery from a base backup: none is taken, and the backup says so.
            context.report(item: "cluster") { $0.phase = .done; $0.step = Self.skippedStep }
            logger.notice("base backup \(req.backupID): skipped, archive_mode is \(row[1] ?? "off") (no point-in-time recovery)")
            return PGOutcome(serverVersion: version, databases: [])
        }
        let total = Int64(row[2] ?? "") ?? 0
        let prefix = basePrefix(backupID: req.backupID, service: req.service)
        let session = try artifacts.writeSession(purpose: "base backup \(req.backupID)", compressionLevel: config.zstdLevel)
        defer { session.close() }
        let chunked = session.format == .chunked
        let key = prefix + (chunked ? "base.tar" : "base.tar.zst")
        context.report(item: "cluster") { $0.phase = .preparing; $0.step = "starting pg_basebackup"; $0.location = key; $0.bytesTotal = total }
        // -X none: the WAL comes from the archive; -c fast: an immediate checkpoint; -v: the WAL positions.
        let tool = ToolProcess(
            path: try toolPath("pg_basebackup", major: major),
            arguments: ["-D", "-", "-Ft", "-X", "none", "-c", "fast", "-v", "--no-password", "-h", config.server.host, "-p", String(config.server.port), "-U", config.server.user],
            pipeStdout: true, pipeStdin: false)
        let sink = try session.sink(key: prefix + "base.tar", plainSuffix: ".zst", compressionLevel: config.zstdLevel, partSize: config.partSize, layout: .tar)
        var raw: Int64 = 0
        // The WAL positions are in the stream itself: backup_label (start, timeline), backup_manifest (end).
        var members = TarMemberCapture(wanted: ["backup_label", "backup_manifest"])
        let stored: StoredArtifact
        do {
            try job.withCancelAction({ tool.kill(SIGKILL) }) {
                try job.checkCancellation()
                try tool.start()
                let pid = tool.pid
                context.report { $0.phase = .transferring; $0.step = "copying the cluster" }
                context.report(item: "cluster") { $0.phase = .transferring; $0.step = "copying"; $0.pid = pid }
                raw = try pump(tool, into: sink, item: "cluster", context: context, job: job) { try members.consume($0) }
            }
            context.report(item: "cluster") { $0.phase = .finishing; $0.step = "uploading"; $0.pid = 0 }
            stored = try sink.finish()
            try session.commit()
        } catch {
            sink.abort()
            throw job.isCancelled ? CancellationError() : error
        }
        let positions = try Self.walPositions(label: members.captured["backup_label"], manifest: members.captured["backup_manifest"])
        guard let startWAL = WALSegment(timeline: positions.timeline, lsn: positions.start),
              let stopWAL = WALSegment(timeline: positions.timeline, lsn: positions.stop) else {
            throw PGSidecarError(.server, "pg_basebackup reported WAL positions that do not parse: \(positions)")
        }
        let metadata = PGBaseBackupMetadata(
            backupID: req.backupID, service: req.service, cluster: cluster, serverVersion: version, timeline: positions.timeline,
            startLSN: positions.start, stopLSN: positions.stop, startWAL: startWAL.name, stopWAL: stopWAL.name, startedAt: started,
            finishedAt: rfc3339(), key: key, format: chunked ? "tar+chunks" : "tar+zstd", size: Int64(stored.size), sha256: stored.sha256,
            tarBytes: raw, chunks: stored.chunks)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // Written last, while the session's lock still holds: the chunks are named before prune can see them.
        try artifacts.s3.putObjectSync(bucket: artifacts.bucket, key: artifacts.prefix + prefix + "metadata.json", bytes: Array(try encoder.encode(metadata)),
                                       contentType: "application/json")
        let r = raw
        context.report(item: "cluster") { s in
            s.phase = .done; s.step = "done"; s.bytesDone = r; s.details["size"] = String(stored.size)
            s.details["new_bytes"] = String(stored.newBytes); s.details["reused_bytes"] = String(stored.reusedBytes)
            s.details["start_wal"] = startWAL.name; s.details["stop_wal"] = stopWAL.name
        }
        return PGOutcome(serverVersion: version, databases: [])
    }

    /// The WAL positions of a base backup, from its `backup_label` ("START WAL LOCATION: 0/2000028 (file
    /// …)", "START TIMELINE: 1") and its `backup_manifest` (`"WAL-Ranges": [{"Timeline": 1, "Start-LSN":
    /// …, "End-LSN": "0/2000100"}]`).
    static func walPositions(label: [UInt8]?, manifest: [UInt8]?) throws -> (timeline: UInt32, start: String, stop: String) {
        guard let label, let manifest else {
            throw PGSidecarError(.server, "pg_basebackup's tar has no \(label == nil ? "backup_label" : "backup_manifest"): the backup's WAL positions are unknown")
        }
        var timeline: UInt32?, start: String?
        for line in String(decoding: label, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("START WAL LOCATION: ") { start = line.dropFirst("START WAL LOCATION: ".count).split(separator: " ").first.map(String.init) }
            if line.hasPrefix("START TIMELINE: ") { timeline = UInt32(line.dropFirst("START TIMELINE: ".count)) }
        }
        let object = try? JSONSerialization.jsonObject(with: Data(manifest)) as? [String: Any]
        let ranges = object?["WAL-Ranges"] as? [[String: Any]] ?? []
        let stop = ranges.last?["End-LSN"] as? String
        guard let timeline, let start, let stop, WALSegment.parseLSN(start) != nil, WALSegment.parseLSN(stop) != nil else {
            throw PGSidecarError(.server, "the base backup's backup_label or backup_manifest does not give its WAL start, timeline and end")
        }
        return (timeline, start, stop)
    }
}
