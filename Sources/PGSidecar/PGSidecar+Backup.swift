import ArtifactStorage
import AutomateRPC
import Crypto
import DataTools
import Foundation
import Operations
import S3Client
import SidecarProto
#if canImport(Glibc)
import Glibc
#endif

extension PGSidecar {
    /// Validates (every database must exist: NOT_FOUND names the first that does not), then starts the
    /// backup as an operation; returns its id at once.
    public func startBackup(_ req: Automate_Sidecar_Pg_PGCreateBackupRequest, caller: RPCCaller = .trusted) async throws -> String {
        guard Self.validID(req.backupID) else { throw RPCError(.invalidArgument, "backup_id \"\(req.backupID)\" is not yyyyMMddHHmmss") }
        guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
        guard !req.databases.isEmpty else { throw RPCError(.invalidArgument, "no databases to back up") }
        try caller.mayActFor(service: req.service, method: "CreateBackup")
        try caller.mayUse(databases: req.databases, method: "CreateBackup")
        let server = config.server
        try await runBlocking("pg.check") { _ in
            let c = try Self.connect(server)
            for d in req.databases where try !c.databaseExists(d) {
                throw RPCError(.notFound, "database \"\(d)\" does not exist")
            }
        }
        let initial = OperationProgress(phase: .pending, items: req.databases.map { OperationProgress.Item(name: $0) })
        // A caller that went away while we checked must not leave an operation nobody follows.
        try Task.checkCancellation()
        let id = try await operations.start(
            idPrefix: "backup-\(req.backupID)", kind: "backup",
            labels: ["backup_id": req.backupID, "service": req.service], initial: initial
        ) { [self] context in
            do {
                let outcome = try await runBlocking("pg.backup") { job in try self.runBackup(context, job, req) }
                logger.info("backup \(context.id) completed: \(req.databases.joined(separator: ", "))")
                return outcome
            } catch {
                logger.error("backup \(context.id) \(Task.isCancelled ? "cancelled" : "failed: \(error)")")
                throw error
            }
        }
        return id
    }

    /// Dumps every database, then writes metadata.json. On cancellation, deletes the dumps it completed
    /// (the multipart upload in progress is aborted by `dumpDatabase`).
    func runBackup(_ context: OperationContext, _ job: BlockingJob, _ req: Automate_Sidecar_Pg_PGCreateBackupRequest) throws -> PGOutcome {
        context.report { $0.phase = .preparing; $0.step = "connecting" }
        let started = rfc3339()
        var completedKeys: [String] = []
        let session = try artifacts.writeSession(
            purpose: "backup \(req.backupID) of \(req.service)'s databases", compressionLevel: config.zstdLevel)
        defer { session.close() }
        do {
            let admin = try PGConnection(config.server)
            let version = admin.serverVersion
            let major = admin.majorVersion
            context.report { $0.details["server_version"] = version }
            for d in req.databases {
                let total = (try? admin.databaseSize(d)) ?? 0
                context.report(item: d) { $0.bytesTotal = total }
            }
            var artifacts: [PGBackupMetadata.Database] = []
            context.report { $0.phase = .transferring; $0.step = "dumping" }
            for d in req.databases {
                try job.checkCancellation()
                do {
                    let a = try dumpDatabase(
                        context, job, session, database: d, backupID: req.backupID, service: req.service, major: major, admin: admin)
                    if a.chunks == nil { completedKeys.append(a.key) }
                    artifacts.append(a)
                } catch {
                    let message = "\(error)"
                    if job.isCancelled { throw CancellationError() }
                    context.report(item: d) { $0.error = message; $0.pid = 0 }
                    throw error
                }
            }
            try job.checkCancellation()
            context.report { $0.phase = .finishing; $0.step = "writing metadata" }
            // A chunked repository's new chunks are indexed now, before the records that name them.
            try session.commit()
            let meta = PGBackupMetadata(
                backupID: req.backupID, service: req.service, serverVersion: version,
                dumpTool: try toolPath("pg_dump", major: major) + " -Fc -Z0"
                    + (session.format == .chunked ? " (chunked, zstd -\(config.zstdLevel) per chunk)" : " | zstd -\(config.zstdLevel)"),
                startedAt: started, finishedAt: rfc3339(), databases: artifacts)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try config.s3.putObjectSync(
                bucket: config.bucket, key: dataPrefix(backupID: req.backupID, service: req.service) + "metadata.json",
                bytes: Array(try enc.encode(meta)), contentType: "application/json")
            return PGOutcome(serverVersion: version, databases: artifacts)
        } catch {
            if job.isCancelled {
                BlockingJob.shielded { for key in completedKeys { try? config.s3.deleteObjectSync(bucket: config.bucket, key: key) } }
                throw CancellationError()
            }
            throw error
        }
    }

    /// pg_dump -Fc -Z0 → the session's sink (plain: zstd → sha256/size → multipart upload; chunked: the
    /// chunk store), all streamed on this thread (parts upload on their own threads, at most two at a
    /// time; chunks are sealed on a thread of their own). Row counts come from the same stream: a
    /// `PGCustomArchiveCounter` reads pg_dump's archive as it goes by (pg_dump's own snapshot makes them
    /// match the dump exactly; no second scan of the tables). Cancelling `job` kills pg_dump's process
    /// group; the upload is aborted.
    /// Streams `tool`'s stdout into `sink` (each chunk seen by `inspect` first), reporting the bytes on
    /// `item`, until the tool exits 0; kills it on any failure. Returns the bytes.
    func pump(_ tool: ToolProcess, into sink: ArtifactSink, item: String, context: OperationContext, job: BlockingJob,
              inspect: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        var raw: Int64 = 0
        var gate = ByteCountGate()
        do {
            try tool.readStdout { chunk in
                try job.checkCancellation()
                raw += Int64(chunk.count)
                try inspect(chunk)
                try sink.write(chunk)
                if gate.passes(raw) {
                    let r = raw, n = String(sink.newBytes), u = String(sink.reusedBytes)
                    context.report(item: item) { $0.bytesDone = r; $0.details["new_bytes"] = n; $0.details["reused_bytes"] = u }
                }
            }
        } catch {
            tool.kill(SIGKILL)
            try? tool.wait()
            throw error
        }
        try tool.wait()
        return raw
    }

    func dumpDatabase(_ context: OperationContext, _ job: BlockingJob, _ session: ArtifactWriteSession, database: String, backupID: String,
                      service: String, major: Int, admin: PGConnection) throws
        -> PGBackupMetadata.Database
    {
        let started = rfc3339()
        let base = dataPrefix(backupID: backupID, service: service) + "\(database).fc"
        let chunked = session.format == .chunked
        let key = chunked ? base : base + ".zst"
        context.report(item: database) { $0.phase = .preparing; $0.step = "starting pg_dump"; $0.location = key }
        let locale = try admin.query(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = $1", [database]
        ).first
        var counter = PGCustomArchiveCounter()

        let tool = ToolProcess(
            path: try toolPath("pg_dump", major: major),
            arguments: ["-Fc", "-Z0"] + toolArgs(database: database),
            pipeStdout: true, pipeStdin: false)
        let sink = try session.sink(key: base, plainSuffix: ".zst", compressionLevel: config.zstdLevel, partSize: config.partSize)
        var raw: Int64 = 0
        var counts: [PGBackupMetadata.Table] = []
        let stored: StoredArtifact
        do {
            try job.withCancelAction({ tool.kill(SIGKILL) }) {
                try job.checkCancellation()
                try tool.start()
                let pid = tool.pid
                context.report(item: database) { $0.phase = .transferring; $0.step = "dumping"; $0.pid = pid }
                // A pg_dump that failed or was killed throws (its stderr), and nothing is completed.
                raw = try pump(tool, into: sink, item: database, context: context, job: job) { try counter.consume($0) }
                // pg_dump exited 0: an archive that is cut or corrupt all the same is refused before the
                // upload completes.
                // Large objects as `PGConnection.tableRowCounts` counts them, so the restore compares like with like.
                counts = (try counter.finish() + [.largeObjects(counter.largeObjects)])
                    .map { PGBackupMetadata.Table(schema: $0.schema, table: $0.table, rows: $0.rows) }
                try job.checkCancellation()
            }
            context.report(item: database) { $0.phase = .finishing; $0.step = "uploading"; $0.pid = 0 }
            stored = try sink.finish()
        } catch {
            sink.abort()
            throw job.isCancelled ? CancellationError() : error
        }
        let r = raw
        context.report(item: database) { s in
            s.phase = .done; s.step = "done"; s.bytesDone = r; s.details["size"] = String(stored.size)
            s.details["new_bytes"] = String(stored.newBytes); s.details["reused_bytes"] = String(stored.reusedBytes)
        }
        return PGBackupMetadata.Database(
            name: database, key: key, format: chunked ? "custom+chunks" : "custom+zstd", size: Int64(stored.size), sha256: stored.sha256,
            uncompressedSize: r, tables: counts, startedAt: started, finishedAt: rfc3339(),
            encoding: locale?[0] ?? nil, lcCollate: locale?[1] ?? nil, lcCtype: locale?[2] ?? nil, chunks: stored.chunks)
    }
}
