import AutomateRPC
import Foundation
import Logging
import Operations
import S3Client
import SidecarProto

extension ESSidecar {
    func resolveIndices(_ patterns: [String]) throws -> [String] {
        // Snapshot mode reaches the cluster through its transport (the same engine URL unless a test
        // replays recorded bodies).
        let all = config.mode == .snapshot ? try snapshots.listIndices() : try engine.listIndices()
        if patterns.isEmpty { return all }
        var out: [String] = []
        for p in patterns {
            if p.hasSuffix("*") {
                out += all.filter { $0.hasPrefix(String(p.dropLast())) }
            } else {
                guard all.contains(p) else { throw SearchError(status: 404, message: "index \"\(p)\" does not exist") }
                out.append(p)
            }
        }
        var seen = Set<String>()
        return out.filter { seen.insert($0).inserted }
    }

    /// Starts `body` as an operation over `indices` and logs how it ended.
    private func startOperation(
        kind: String, snapshot: String, service: String, indices: [String],
        _ body: @escaping @Sendable (OperationContext) async throws -> ESOutcome
    ) async throws -> String {
        let initial = OperationProgress(phase: .preparing, items: indices.map { OperationProgress.Item(name: $0) })
        let logger = self.logger
        do {
            // A caller that went away while we validated must not leave an operation nobody follows.
            try Task.checkCancellation()
            return try await operations.start(
                idPrefix: "\(kind)-\(snapshot)", kind: kind, labels: ["snapshot": snapshot, "service": service], initial: initial
            ) { context in
                do {
                    let outcome = try await body(context)
                    logger.info("\(kind) \(context.id) completed: \(outcome.indices.count) indices")
                    return outcome
                } catch {
                    logger.error("\(kind) \(context.id) \(Task.isCancelled ? "cancelled" : "failed: \(error)")")
                    throw error
                }
            }
        } catch {
            throw rpcError(error)
        }
    }

    // MARK: snapshot (export or _snapshot)

    public func startSnapshot(_ req: Automate_Sidecar_Es_ESCreateSnapshotRequest) async throws -> String {
        guard Self.validName(req.service), Self.validName(req.snapshot) else { throw RPCError(.invalidArgument, "bad service or snapshot name") }
        let indices = try await blocking { [self] in try resolveIndices(req.indices) }
        switch config.mode {
        case .export:
            let store = exportStore(service: req.service, snapshot: req.snapshot)
            let exporter = Exporter(engine: engine), url = config.searchURL
            return try await startOperation(kind: "snapshot", snapshot: req.snapshot, service: req.service, indices: indices) { context in
                context.report { $0.phase = .transferring; $0.step = "exporting" }
                let out = try await runBlocking("es.export") { job in
                    defer { store.close() }
                    do {
                        return try exporter.export(indices: indices, to: store, meta: ["service": req.service, "snapshot": req.snapshot, "engine": url]) {
                            index, done, total in
                            try job.checkCancellation()
                            context.report(item: index) { $0.phase = .transferring; $0.itemsDone = done; $0.itemsTotal = total }
                        }
                    } catch {
                        // The upload in progress was aborted; indices exported before the cancel go too.
                        if job.isCancelled {
                            _ = try? BlockingJob.shielded { try store.s3.deletePrefixSync(bucket: store.bucket, prefix: store.prefix) }
                            throw CancellationError()
                        }
                        throw error
                    }
                }
                return ESOutcome(indices: out.map { .init(name: $0.name, docs: $0.docs, size: $0.size, sha256: $0.sha256) })
            }
        case .snapshot:
            let snapshots = self.snapshots, logger = self.logger
            // Deleting the snapshot aborts it while the cluster is still taking it and removes what it wrote.
            let deleteSnapshot: @Sendable () async -> Void = {
                await Self.undo("deleting snapshot \(req.snapshot) of \(req.service)", logger) {
                    try snapshots.deleteSnapshot(service: req.service, snapshot: req.snapshot)
                }
            }
            try Task.checkCancellation()
            try await blocking { try snapshots.createSnapshot(service: req.service, snapshot: req.snapshot, indices: indices) }
            do {
                return try await startOperation(kind: "snapshot", snapshot: req.snapshot, service: req.service, indices: indices) { context in
                    do {
                        // The cluster works on its own: its `_status` is the only way to follow it (once a second).
                        while true {
                            let p = try await runBlocking("es.snapshot.status") { _ in try snapshots.snapshotStatus(service: req.service, snapshot: req.snapshot) }
                            Self.report(p, to: context)
                            if p.phase == .failed { throw SearchError(status: 0, message: p.error) }
                            if p.phase == .completed { return ESOutcome(indices: p.indices.map { .init(name: $0.index, docs: 0, size: 0, sha256: "") }) }
                            try await Task.sleep(for: .seconds(1))
                        }
                    } catch {
                        guard Task.isCancelled else { throw error }
                        await deleteSnapshot()
                        throw CancellationError()
                    }
                }
            } catch {
                if Task.isCancelled { await deleteSnapshot() }  // created, but no operation follows it
                throw error
            }
        }
    }

    /// Runs `cleanup` on the blocking pool in a task of its own (the caller is already cancelled, and a
    /// cancelled caller's blocking work would never start); a failure is logged, not thrown.
    static func undo(_ what: String, _ logger: Logger, _ cleanup: @escaping @Sendable () throws -> Void) async {
        await Task.detached {
            do { try await runBlocking("es.undo") { _ in try cleanup() } } catch { logger.error("\(what) after cancel failed: \(error)") }
        }.value
    }

    /// A cluster's shard progress as the operation's items (shards counted as items).
    static func report(_ p: SnapshotProgress, to context: OperationContext) {
        context.report { progress in
            progress.phase = .transferring
            for i in p.indices {
                progress.update(item: i.index) { item in
                    item.itemsDone = i.shardsDone
                    item.itemsTotal = i.shardsTotal
                    item.phase = i.phase == .completed ? .done : .transferring
                    if i.phase == .failed { item.error = i.error.isEmpty ? "shards failed" : i.error }
                }
            }
        }
    }

    // MARK: restore

    public func startRestore(_ req: Automate_Sidecar_Es_ESRestoreSnapshotRequest) async throws -> String {
        guard Self.validName(req.service), Self.validName(req.snapshot) else { throw RPCError(.invalidArgument, "bad service or snapshot name") }
        switch config.mode {
        case .snapshot:
            let indices = req.indices, snapshots = self.snapshots, logger = self.logger
            try Task.checkCancellation()
            try await blocking { try snapshots.restore(service: req.service, snapshot: req.snapshot, indices: indices) }
            if Task.isCancelled {  // started, but no operation would follow it: stop it again
                await Self.undo("deleting indices \(indices.joined(separator: ", ")) being restored", logger) { try snapshots.deleteIndices(indices) }
                throw CancellationError()
            }
            return try await startOperation(kind: "restore", snapshot: req.snapshot, service: req.service, indices: indices) { context in
                // Restored indices are usable while their shards recover: short-term done at once.
                context.report { $0.phase = .loading; $0.step = "recovering" }
                var recovering = indices
                do {
                    while true {
                        let p = try await runBlocking("es.restore.status") { _ in try snapshots.restoreStatus(indices: indices) }
                        recovering = p.indices.filter { $0.phase != .completed }.map(\.index)
                        Self.report(p, to: context)
                        if p.phase == .completed { return ESOutcome(indices: p.indices.map { .init(name: $0.index, docs: 0, size: 0, sha256: "") }) }
                        try await Task.sleep(for: .seconds(1))
                    }
                } catch {
                    guard Task.isCancelled else { throw error }
                    // A restore stops only when its indices are deleted; those fully recovered stay.
                    let stop = recovering
                    await Self.undo("deleting indices \(stop.joined(separator: ", ")) still being restored", logger) {
                        try snapshots.deleteIndices(stop)
                    }
                    throw CancellationError()
                }
            }
        case .export:
            let es = exportStore(service: req.service, snapshot: req.snapshot)
            let exporter = Exporter(engine: engine)
            let chosen = try await blocking { () -> [ExportedIndex] in
                guard let m = try exporter.readManifest(from: es) else {
                    throw SearchError(status: 404, message: "snapshot \(req.snapshot) of \(req.service) has no manifest.json")
                }
                var chosen = m.indices
                if !req.indices.isEmpty {
                    for n in req.indices where !chosen.contains(where: { $0.name == n }) {
                        throw SearchError(status: 404, message: "index \"\(n)\" is not in snapshot \(req.snapshot)")
                    }
                    chosen = chosen.filter { req.indices.contains($0.name) }
                }
                if !req.replaceExisting {
                    for i in chosen where try exporter.engine.indexExists(i.name) {
                        throw SearchError(status: 409, message: "index \"\(i.name)\" already exists (set replace_existing)")
                    }
                }
                return chosen
            }
            let replace = req.replaceExisting
            return try await startOperation(kind: "restore", snapshot: req.snapshot, service: req.service, indices: chosen.map(\.name)) { context in
                try await runBlocking("es.import") { job in try Self.runImport(context, job, exporter, chosen, es, replace: replace) }
            }
        }
    }

    /// Verifies every object first (nothing touched if any is altered or truncated), then creates every
    /// index (short-term done: the indices exist and are usable; phase `loading`), then bulk-loads.
    static func runImport(
        _ context: OperationContext, _ job: BlockingJob, _ exporter: Exporter, _ indices: [ExportedIndex], _ es: S3ExportStore, replace: Bool
    ) throws -> ESOutcome {
        context.report { $0.phase = .preparing; $0.step = "verifying" }
        for i in indices {
            try job.checkCancellation()
            let docs = i.docs, size = i.size
            context.report(item: i.name) { $0.phase = .verifying; $0.itemsTotal = docs; $0.bytesTotal = size }
            try exporter.verify(i, in: es)
        }
        context.report { $0.step = "creating" }
        for i in indices {
            try job.checkCancellation()
            try exporter.create(i, replace: replace)
        }
        context.report { $0.phase = .loading; $0.step = "loading" }
        for i in indices {
            do {
                try exporter.load(i, from: es) { index, done, _ in
                    try job.checkCancellation()
                    context.report(item: index) { $0.phase = .loading; $0.itemsDone = done }
                }
            } catch {
                if job.isCancelled { throw CancellationError() }
                let message = "\(error)"
                context.report(item: i.name) { $0.error = message }
                throw error
            }
            let docs = i.docs
            context.report(item: i.name) { $0.phase = .done; $0.itemsDone = docs }
        }
        return ESOutcome(indices: indices.map { .init(name: $0.name, docs: $0.docs, size: $0.size, sha256: $0.sha256) })
    }
}
