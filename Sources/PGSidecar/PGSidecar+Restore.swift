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
    public func startRestore(_ req: Automate_Sidecar_Pg_PGRestoreRequest, caller: RPCCaller = .trusted) async throws -> String {
        guard Self.validID(req.backupID) else { throw RPCError(.invalidArgument, "backup_id \"\(req.backupID)\" is not yyyyMMddHHmmss") }
        guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
        try caller.mayActFor(service: req.service, method: "Restore")
        var artifacts = req.artifacts
        // The sidecar's own metadata: the artifacts when the request names none, and the chunks of a
        // chunked dump (the request carries what a plain one needs only).
        var chunks: [String: ChunkRecord] = [:]
        if artifacts.isEmpty || artifacts.contains(where: { $0.format == "custom+chunks" }) {
            let key = dataPrefix(backupID: req.backupID, service: req.service) + "metadata.json"
            let s3 = config.s3, bucket = config.bucket
            let body: [UInt8]
            do { body = try await runBlocking("pg.metadata") { _ in try s3.getObjectSync(bucket: bucket, key: key) } } catch let e as S3Error where e.isNotFound {
                throw RPCError(.notFound, "backup \(req.backupID) of \(req.service) has no \(key)")
            }
            let dec = JSONDecoder()
            let meta: PGBackupMetadata
            do { meta = try dec.decode(PGBackupMetadata.self, from: Data(body)) } catch {
                throw RPCError(.dataLoss, "\(key) does not decode: \(error)")
            }
            for d in meta.databases { if let c = d.chunks { chunks[d.key] = c } }
            if artifacts.isEmpty {
                artifacts = meta.databases.map { d in
                    var a = Automate_Sidecar_Pg_PGArtifact()
                    a.database = d.name; a.key = d.key; a.format = d.format; a.sha256 = d.sha256; a.size = d.size
                    a.encoding = d.encoding ?? ""; a.lcCollate = d.lcCollate ?? ""; a.lcCtype = d.lcCtype ?? ""
                    a.tables = d.tables.map { t in var x = Automate_Sidecar_Pg_PGTableCount(); x.schema = t.schema; x.table = t.table; x.rows = t.rows; return x }
                    return a
                }
            }
        }
        if !req.databases.isEmpty {
            for d in req.databases where !artifacts.contains(where: { $0.database == d }) {
                throw RPCError(.notFound, "database \"\(d)\" is not in backup \(req.backupID) of \(req.service)")
            }
            artifacts = artifacts.filter { req.databases.contains($0.database) }
        }
        for a in artifacts {
            guard ["custom+zstd", "custom", "sql", "custom+chunks"].contains(a.format) else { throw RPCError(.invalidArgument, "artifact \(a.key): unknown format \"\(a.format)\"") }
            guard a.sha256.count == 64 else { throw RPCError(.invalidArgument, "artifact \(a.key) has no sha256; refusing to restore what cannot be checked") }
            if a.format == "custom+chunks" {
                guard let c = chunks[a.key], c.digest == a.sha256.lowercased(), c.size == a.size else {
                    throw RPCError(.dataLoss, "artifact \(a.key) is chunked and its record in pg_data/metadata.json is missing or does not match (sha256 \(a.sha256.prefix(12))…, \(a.size) bytes); refusing to restore")
                }
            }
        }
        // The databases come from the request or from metadata the caller may have written: a client
        // restores over its own databases only.
        try caller.mayUse(databases: artifacts.map(\.database), method: "Restore")
        let chosen = artifacts, chunkRecords = chunks
        let initial = OperationProgress(phase: .pending, items: chosen.map { OperationProgress.Item(name: $0.database, bytesTotal: $0.size) })
        // A caller that went away while we read the metadata must not leave an operation nobody follows.
        try Task.checkCancellation()
        return try await operations.start(
            idPrefix: "restore-\(req.backupID)", kind: "restore",
            labels: ["backup_id": req.backupID, "service": req.service], initial: initial
        ) { [self] context in
            do {
                let outcome = try await runBlocking("pg.restore") { job in try self.runRestore(context, job, chosen, chunks: chunkRecords) }
                logger.info("restore \(context.id) completed")
                return outcome
            } catch {
                logger.error("restore \(context.id) \(Task.isCancelled ? "cancelled" : "failed: \(error)")")
                throw error
            }
        }
    }

    func runRestore(_ context: OperationContext, _ job: BlockingJob, _ artifacts: [Automate_Sidecar_Pg_PGArtifact], chunks: [String: ChunkRecord]) throws
        -> PGOutcome
    {
        context.report { $0.phase = .transferring; $0.step = "restoring" }
        let admin = try PGConnection(config.server)
        let version = admin.serverVersion
        context.report { $0.details["server_version"] = version }
        var done: [PGBackupMetadata.Database] = []
        let reader = self.artifacts.reader()
        // The databases the restored ones replaced are dropped off the restore's path (each DROP waits
        // for a checkpoint), also when a later one fails; any an earlier restore did not get to go too.
        defer {
            let server = config.server, logger = self.logger
            Task.detached {
                try? await runBlocking("pg.drop-replaced", observingCancellation: false) { _ in DatabaseSwap.dropReplaced(server: server, logger: logger) }
            }
        }
        for a in artifacts {
            try job.checkCancellation()
            do {
                try restoreDatabase(context, job, a, chunks: chunks[a.key], reader: reader, admin: admin)
            } catch {
                let message = "\(error)"
                if job.isCancelled { throw CancellationError() }
                context.report(item: a.database) { $0.error = message; $0.pid = 0 }
                throw error
            }
            done.append(PGBackupMetadata.Database(
                name: a.database, key: a.key, format: a.format, size: a.size, sha256: a.sha256, uncompressedSize: 0,
                tables: a.tables.map { PGBackupMetadata.Table(schema: $0.schema, table: $0.table, rows: $0.rows) },
                startedAt: "", finishedAt: rfc3339()))
        }
        return PGOutcome(serverVersion: version, databases: done)
    }

    /// Restores into a fresh temporary database, verifies the object's sha256 (streamed) and the row
    /// counts, and only then replaces the existing database (renamed aside, then dropped after the restore:
    /// ``DatabaseSwap``). Any failure drops the temporary database and leaves the existing one untouched.
    func restoreDatabase(_ context: OperationContext, _ job: BlockingJob, _ a: Automate_Sidecar_Pg_PGArtifact, chunks: ChunkRecord?,
                         reader: ArtifactReader, admin: PGConnection) throws {
        let id = context.id
        let suffix = "__restore_" + String(id.suffix(12))
        var base = a.database
        while base.utf8.count + suffix.utf8.count > 63 { base.removeLast() }
        let temp: String = base + suffix
        context.report(item: a.database) { $0.phase = .transferring; $0.step = "restoring"; $0.location = a.key }
        try admin.query("DROP DATABASE IF EXISTS \(quoteIdent(temp))")
        // The original database's encoding and locale when the backup recorded them, else the server's.
        func literal(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
        var create = "CREATE DATABASE \(quoteIdent(temp)) TEMPLATE template0"
        if !a.encoding.isEmpty { create += " ENCODING \(literal(a.encoding))" }
        if !a.lcCollate.isEmpty { create += " LC_COLLATE \(literal(a.lcCollate))" }
        if !a.lcCtype.isEmpty { create += " LC_CTYPE \(literal(a.lcCtype))" }
        try admin.query(create)
        var committed = false
        defer {
            if !committed { _ = try? admin.query("DROP DATABASE IF EXISTS \(quoteIdent(temp)) WITH (FORCE)") }
        }
        let major = admin.majorVersion
        let sink: RestoreSink
        if a.format == "sql" {
            sink = .psql(ToolProcess(path: try toolPath("psql", major: major),
                                     arguments: ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"] + toolArgs(database: temp) + ["-f", "-"],
                                     pipeStdout: false, pipeStdin: true))
        } else {
            // Its sessions build the indexes, with the configured maintenance_work_mem.
            var env = ProcessInfo.processInfo.environment
            env["PGOPTIONS"] = "-c maintenance_work_mem=\(config.restoreMaintenanceWorkMem)"
            let tools = PGArchiveRestore.Tools(pgRestore: try toolPath("pg_restore", major: major), target: toolArgs(database: temp), environment: env)
            sink = .archive(PGArchiveRestore(tools: tools, server: config.server, database: temp, connections: config.restoreConnections) { pid in
                context.report(item: a.database) { $0.pid = pid }
            })
        }
        let f: Int64 = try job.withCancelAction({ sink.cancel() }) {
            try job.checkCancellation()
            defer { sink.close() }
            try sink.start()
            if let pid = sink.pid { context.report(item: a.database) { $0.pid = pid } }
            var hasher = SHA256()
            var fetched: Int64 = 0
            var gate = ByteCountGate()
            do {
                let feed: (UnsafeRawBufferPointer) throws -> Void = { chunk in try sink.feed(chunk) }
                let zstd = a.format == "custom+zstd" ? try ZstdDecompressor(output: feed) : nil
                try reader.read(key: a.key, chunks: chunks) { chunk in
                    try job.checkCancellation()
                    if chunks == nil { hasher.update(bufferPointer: chunk) }  // chunks are checked as they are read
                    fetched += Int64(chunk.count)
                    if let zstd { try zstd.decompress(chunk) } else { try feed(chunk) }
                    if gate.passes(fetched) {
                        let f = fetched
                        context.report(item: a.database) { $0.bytesDone = f }
                    }
                }
                try zstd?.finish()
                let digest = hex(hasher.finalize())
                // A chunked dump was checked as it was read (every chunk, then its size and sha256).
                if chunks == nil, digest != a.sha256.lowercased() {
                    throw PGSidecarError(.integrity, "\(a.key): sha256 \(digest) does not match the backup's \(a.sha256) (\(fetched) bytes read, \(a.size) expected); refusing to restore")
                }
            } catch {
                if let e = error as? S3Error, e.isNotFound { throw PGSidecarError(.missing, "\(a.key) is missing: \(e)") }
                throw error
            }
            if sink.isParallel { context.report(item: a.database) { $0.step = "building indexes" } }
            try sink.finish()
            return fetched
        }
        context.report(item: a.database) { $0.bytesDone = f; $0.pid = 0; $0.phase = .verifying; $0.step = "counting" }
        if !a.tables.isEmpty {
            var got: [String: Int64] = [:]
            if let loaded = sink.loadedTables {
                // COPY's own counts (each already equal to the archive's): no scan of what was just loaded.
                for t in loaded { got["\(t.schema).\(t.table)", default: 0] += t.rows }
            } else {
                let conn = try PGConnection(config.server, database: temp)
                for t in try conn.tableRowCounts() { got["\(t.schema).\(t.table)"] = t.rows }
            }
            for t in a.tables {
                let name = "\(t.schema).\(t.table)"
                if got[name] != t.rows {
                    throw PGSidecarError(.integrity, "row count of \(name) is \(got[name].map(String.init) ?? "missing") after restore, the backup has \(t.rows)")
                }
            }
        }
        try job.checkCancellation()
        context.report(item: a.database) { $0.phase = .finishing; $0.step = "renaming" }
        // The database it replaces is renamed aside and dropped after the restore (see DatabaseSwap).
        try DatabaseSwap(admin: admin).swap(temp, into: a.database, aside: DatabaseSwap.asideName(a.database, restore: id))
        committed = true
        context.report(item: a.database) { $0.phase = .done; $0.step = "done"; $0.details["size"] = String(f) }
    }
}

/// Where a restore's bytes go: psql for a plain SQL dump, ``PGArchiveRestore`` for a custom archive.
private enum RestoreSink: Sendable {
    case psql(ToolProcess)
    case archive(PGArchiveRestore)

    var pid: Int32? {
        if case .psql(let tool) = self { return tool.pid }
        return nil
    }

    var isParallel: Bool {
        if case .archive(let r) = self { return r.isParallel }
        return false
    }

    /// The rows COPY loaded per table, when the archive was loaded in parallel (see PGArchiveRestore).
    var loadedTables: [PGCustomArchiveCounter.TableCount]? {
        if case .archive(let r) = self { return r.loadedTables }
        return nil
    }

    func start() throws {
        if case .psql(let tool) = self { try tool.start() }
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws {
        switch self {
        case .psql(let tool): try tool.writeStdin(bytes)
        case .archive(let r): try r.feed(bytes)
        }
    }

    func finish() throws {
        switch self {
        case .psql(let tool):
            tool.closeStdin()
            try tool.wait()
        case .archive(let r): try r.finish()
        }
    }

    func cancel() {
        switch self {
        case .psql(let tool): tool.kill(SIGKILL)
        case .archive(let r): r.cancel()
        }
    }

    /// After `finish` or a failure: nothing of the restore is left running.
    func close() {
        switch self {
        case .psql(let tool):
            tool.kill(SIGKILL)
            tool.closeStdin()
            try? tool.wait()
        case .archive(let r): r.close()
        }
    }
}
