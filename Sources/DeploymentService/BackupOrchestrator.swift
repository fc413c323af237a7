import AutomateRPC
import BackupContract
import BackupRepository
import Foundation
import Logging
import Operations
import S3Client
import ServiceKit
import SidecarProto

/// Runs one backup of the whole stack at a time: makes the id, writes `.status` = in_progress, asks every
/// service to back up under that id (a bounded number at once), backs up its own store, then writes
/// `backup-result.json`, `checksums.json` and, last, `.status` = completed or failed. Every step is
/// journaled in the store as it happens (the start with its services, each service's outcome, the
/// outcome), so that a restarted deployment-service knows what it left (see ``StartupReconciler``).
///
/// Each backup is an operation of the stack's one operation layer (``ProgressRegistry``): a task of its
/// own whose status (the ``StackBackup``) changes one update at a time, in order, watched as a stream of
/// every change; cancelling it cancels that task. Backups it no longer holds are read from the store.
public actor BackupOrchestrator {
    let config: DeploymentConfig
    let store: DeploymentStore
    let logger: Logger
    /// The id of the backup that runs, if one does.
    private var current: String?
    private let operations = ProgressRegistry<StackBackup, StackBackup>(owner: "deployment-service", keepEnded: 20)
    typealias Context = ProgressContext<StackBackup>

    public init(config: DeploymentConfig, store: DeploymentStore, logger: Logger) {
        self.config = config
        self.store = store
        self.logger = logger
    }

    // MARK: API

    /// Starts a backup; FAILED_PRECONDITION naming the running one when one runs.
    public func create(serviceTimeout: Duration? = nil) async throws -> StackBackup {
        if let current {
            let started = try? await operations.status(current).progress.startedAtUnixMs
            throw RPCError(.failedPrecondition,
                "backup \(current) is running (started \(started.map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double($0) / 1000)) } ?? "just now")); wait for it (`automate backup status`) or cancel it (`automate backup cancel`)")
        }
        let stack: StackServices
        do {
            stack = try StackServices.load(servicesDirectory: config.servicesDirectory, environment: config.environment)
        } catch {
            throw RPCError(.failedPrecondition, "cannot read the stack's manifests in \(config.servicesDirectory): \(error)")
        }
        let id = try await newID()
        let participants = stack.services.filter(\.takesPartInBackups)
        let names = participants.map(\.manifest.name) + ["deployment-service"]
        var status = StackBackup()
        status.backupID = id
        status.state = .running
        status.startedAtUnixMs = unixMillis()
        try store.insertBackup(id: id, startedAt: status.startedAtUnixMs, services: names)
        try store.recordServices(stack.services.map {
            .init(name: $0.manifest.name, kind: $0.manifest.kind.rawValue, contract: $0.manifest.backup.contract,
                  dependsOn: $0.manifest.dependsOn, manifest: $0.text, sourcePath: $0.manifest.sourcePath)
        })
        status.services = names.map { name in
            var s = ServiceBackupStatus()
            s.backupID = id; s.service = name; s.state = .running; s.progress.phase = "waiting"
            return s
        }
        let timeout = serviceTimeout ?? config.serviceTimeout
        // Set before the operation starts: its end (which clears it) may come before `start` returns here.
        current = id
        do {
            try await operations.start(id: id, kind: "backup", labels: ["backup_id": id], initial: status) { context in
                await self.perform(id: id, stack: stack, timeout: timeout, context: context)
            }
        } catch {
            current = nil
            throw error
        }
        logger.info("backup \(id): started with \(participants.count) services")
        return status
    }

    /// A backup's status; empty id: the running one, else the most recent in the store (so the history
    /// survives restarts).
    public func status(_ id: String) async throws -> StackBackup {
        if id.isEmpty, let current, let s = await held(current) { return s }
        if !id.isEmpty, let s = await held(id) { return s }
        if let b = try id.isEmpty ? store.latestBackup() : store.backup(id) {
            if let s = await held(b.id) { return s }
            return Self.fromRecord(b)
        }
        throw RPCError(.notFound, id.isEmpty ? "no backup has run yet" : "no backup \(id) (see `automate backup list`)")
    }

    /// The status of a backup the operation layer still holds (it ran since this process started).
    private func held(_ id: String) async -> StackBackup? {
        guard let snapshot = try? await operations.status(id) else { return nil }
        return snapshot.status
    }

    /// The backup's status, then every change in order, until it ends.
    public func watch(_ id: String) async throws -> AsyncStream<StackBackup> {
        let s = try await status(id)
        guard s.state == .running, let updates = try? await operations.statuses(s.backupID) else {
            return AsyncStream { $0.yield(s); $0.finish() }
        }
        return updates
    }

    /// Cancels the running backup (empty id) or the one named; FAILED_PRECONDITION when it is not running.
    public func cancel(_ id: String) async throws -> StackBackup {
        guard let current, id.isEmpty || id == current else {
            throw RPCError(.failedPrecondition, id.isEmpty ? "no backup is running" : "backup \(id) is not running")
        }
        logger.notice("backup \(current): cancel requested")
        // Its task stops its services' work and removes what they wrote before it ends.
        _ = try await operations.cancel(current)
        return try await operations.wait(current).status
    }

    /// The backup history in the store (deleted ones left out).
    public func list() async throws -> [StackBackup] {
        let held = Dictionary(await operations.list().map { ($0.id, $0.status) }, uniquingKeysWith: { $1 })
        return try store.backups().map { held[$0.id] ?? Self.fromRecord($0) }
    }

    /// Deletes backups from the repository: `.status` first (so a half-deleted backup never looks
    /// complete), then `checksums.json`, then everything under the id, and its search exports; then the
    /// archived WAL no kept base backup needs (``pruneWALArchive()``).
    public func delete(_ ids: [String]) async throws -> (deleted: [String], objects: Int) {
        for id in ids {
            guard BackupID(id) != nil else { throw RPCError(.invalidArgument, "\"\(id)\" is not a backup id (yyyyMMddHHmmss)") }
            if current == id { throw RPCError(.failedPrecondition, "backup \(id) is running; cancel it first (`automate backup cancel`)") }
        }
        let s3 = config.kit.s3, bucket = config.kit.bucket
        var deleted: [String] = []
        var objects = 0
        for id in ids {
            let n: Int = try await runBlocking(observingCancellation: false) { _ in
                let exists = try s3.listObjectsSync(bucket: bucket, prefix: id + "/")
                let exports = try s3.listObjectsSync(bucket: bucket, prefix: "automate-elasticsearch-data/").filter {
                    let parts = $0.key.split(separator: "/")
                    return parts.count >= 3 && parts[2] == id
                }
                guard !exists.isEmpty || !exports.isEmpty else { return -1 }
                var n = 0
                for key in ["\(id)/.status", "\(id)/checksums.json"] where exists.contains(where: { $0.key == key }) {
                    try s3.deleteObjectSync(bucket: bucket, key: key)
                    n += 1
                }
                n += try s3.deletePrefixSync(bucket: bucket, prefix: id + "/")
                for o in exports {
                    try s3.deleteObjectSync(bucket: bucket, key: o.key)
                    n += 1
                }
                return n
            }
            if n < 0, try store.backup(id) == nil {
                throw RPCError(.notFound, "no backup \(id) in the repository")
            }
            try store.markDeleted(id)
            await operations.remove(id)
            deleted.append(id)
            objects += max(0, n)
            logger.info("backup \(id): deleted (\(max(0, n)) objects)")
        }
        if !deleted.isEmpty {
            do { objects += try await pruneWALArchive() } catch {
                logger.error("WAL archive: retention not applied after deleting \(deleted.joined(separator: ", ")): \(error)")
            }
        }
        return (deleted, objects)
    }

    // MARK: running a backup

    /// A fresh id: now, moved on by a second while that id is taken (in the store or the repository).
    private func newID() async throws -> String {
        var date = Date()
        let s3 = config.kit.s3, bucket = config.kit.bucket
        for _ in 0..<120 {
            let id = BackupID(date: date).rawValue
            let taken = try store.backupIDUsed(id)
            let inRepository = try await runBlocking(observingCancellation: false) { _ in try !s3.listObjectsSync(bucket: bucket, prefix: id + "/").isEmpty }
            if !taken && !inRepository { return id }
            date += 1
        }
        throw RPCError(.internal, "no free backup id in the next 120 seconds")
    }

    /// Applies one service's report (in order, after the ones before it); a service's ended status is
    /// final, and journaled in the store as it ends.
    private nonisolated func update(_ context: Context, service: String, _ s: ServiceBackupStatus) {
        let (store, logger) = (self.store, self.logger)
        context.report { status in
            guard status.state == .running, let i = status.services.firstIndex(where: { $0.service == service }),
                  status.services[i].state == .running else { return }
            status.services[i] = s
            status.services[i].service = service
            if s.state != .running { Self.journal(store, logger, status.backupID, status.services[i]) }
            status.bytesWritten = status.services.reduce(0) { total, s in
                total + (s.artifacts.isEmpty ? s.progress.bytesDone : s.artifacts.reduce(0) { $0 + $1.size })
            }
            status.newBytes = status.services.reduce(0) { $0 + $1.progress.newBytes }
            status.reusedBytes = status.services.reduce(0) { $0 + $1.progress.reusedBytes }
        }
    }

    /// The backup's end: services still running are marked so (and journaled); returns the final status.
    private func finish(_ context: Context, state: BackupOperationState, error: String, fingerprint: String) async -> StackBackup {
        let (store, logger) = (self.store, self.logger)
        let final = await context.updated { status in
            for i in status.services.indices where status.services[i].state == .running {
                status.services[i].state = state == .cancelled ? .cancelled : .failed
                if status.services[i].error.isEmpty { status.services[i].error = state == .cancelled ? "cancelled" : "stopped: \(error)" }
                status.services[i].finishedAtUnixMs = unixMillis()
                Self.journal(store, logger, status.backupID, status.services[i])
            }
            status.state = state
            status.error = error
            status.fingerprint = fingerprint
            status.finishedAtUnixMs = unixMillis()
        }
        current = nil
        return final
    }

    /// Journals one service's outcome as it ends.
    private static func journal(_ store: DeploymentStore, _ logger: Logger, _ id: String, _ s: ServiceBackupStatus) {
        let bytes = s.artifacts.isEmpty ? s.progress.bytesDone : s.artifacts.reduce(0) { $0 + $1.size }
        do {
            try store.recordServiceOutcome(backupID: id, .init(
                service: s.service, state: Self.name(s.state), error: s.error, bytes: Int64(bytes),
                startedAt: s.startedAtUnixMs, finishedAt: s.finishedAtUnixMs > 0 ? s.finishedAtUnixMs : unixMillis()))
        } catch {
            logger.error("backup \(id): could not journal the outcome of \(s.service): \(error)")
        }
    }

    /// The whole run. Never throws: every outcome ends in `.status` (when the gateway answers) and the store.
    private func perform(id: String, stack: StackServices, timeout: Duration, context: Context) async -> StackBackup {
        let s3 = config.kit.s3, bucket = config.kit.bucket
        let writer = RepositoryWriter(s3: s3, bucket: bucket, logger: logger)
        var failure: String? = nil
        var cancelled = false
        do {
            // A new repository gets its format (and, chunked, its chunk store and first key) before the
            // first backup's first object; one with backups keeps its own.
            let artifacts = config.kit.artifacts, format = config.newRepositoryFormat
            try await runBlocking("deployment.repository") { _ in try artifacts.initializeIfNew(format) }
            try await writer.put("\(id)/.status", Array("in_progress\n".utf8))
            try await createRepositories(stack)
            let participants = makeParticipants(stack)
            let selfBackup = SelfBackup(config: config, store: store, stack: stack)
            try await withThrowingTaskGroup(of: Void.self) { group in
                var running = 0
                for p in participants {
                    if running >= config.maxParallel {
                        try await group.next()
                        running -= 1
                    }
                    group.addTask { try await self.follow(p, id: id, timeout: timeout, context: context) }
                    running += 1
                }
                group.addTask {
                    let started = unixMillis()
                    self.update(context, service: "deployment-service", Self.running(id, "deployment-service", phase: "copying store", started: started))
                    let metadata: ServiceMetadata
                    do {
                        metadata = try await selfBackup.run(backupID: id)
                    } catch {
                        if Task.isCancelled { throw CancellationError() }
                        var s = Self.running(id, "deployment-service", phase: "failed", started: started)
                        s.state = .failed
                        s.error = "\(error)" + (await self.gatewayDiagnosis("\(error)"))
                        s.finishedAtUnixMs = unixMillis()
                        self.update(context, service: "deployment-service", s)
                        throw ParticipantError("deployment-service: \(s.error)")
                    }
                    var s = Self.running(id, "deployment-service", phase: "done", started: started)
                    s.state = .completed
                    s.finishedAtUnixMs = unixMillis()
                    s.artifacts = metadata.artifacts.map { Self.artifact(id: id, service: "deployment-service", $0) }
                    s.progress.count(metadata.artifacts)
                    self.update(context, service: "deployment-service", s)
                }
                try await group.waitForAll()
            }
        } catch {
            if Task.isCancelled || error is CancellationError {
                cancelled = true
                failure = "cancelled by the operator"
            } else {
                failure = "\(error)"
            }
        }
        if cancelled {
            // Stop every service's work under this id and remove what it wrote.
            for p in makeParticipants(stack) { await p.abandon(backupID: id) }
        }
        // The records: backup-result.json, then checksums.json (completed only), then .status last.
        let final = await context.updated()
        var fingerprint = ""
        if failure == nil {
            do {
                let sums = try await checksums(id: id, services: final.services.map(\.service))
                try await writer.put("\(id)/backup-result.json", Self.result(final, state: "completed", error: ""))
                try await writer.put("\(id)/checksums.json", sums)
                fingerprint = Checksum.sha256(sums)
                try await writer.put("\(id)/.status", Array("completed\n".utf8))
            } catch {
                failure = "writing the backup's records failed: \(error)"
                fingerprint = ""
            }
        }
        var statusUnwritten = false
        if let failure {
            try? await writer.put("\(id)/backup-result.json", Self.result(final, state: "failed", error: failure))
            do { try await writer.put("\(id)/.status", Array("failed\n".utf8)) } catch {
                statusUnwritten = true
                logger.error("backup \(id): could not write .status = failed (\(error)); the next start of the deployment-service writes it")
            }
        }
        let done = await finish(context, state: failure == nil ? .completed : (cancelled ? .cancelled : .failed), error: failure ?? "",
                                fingerprint: fingerprint)
        do {
            try store.finishBackup(
                id: id, state: failure == nil ? "completed" : "failed", finishedAt: unixMillis(), error: failure ?? "",
                bytes: Int64(done.bytesWritten), fingerprint: fingerprint,
                result: String(decoding: Self.result(done, state: failure == nil ? "completed" : "failed", error: failure ?? ""), as: UTF8.self),
                repositoryPending: statusUnwritten)
        } catch {
            logger.error("backup \(id): could not record the outcome in the store: \(error)")
        }
        if let failure { logger.error("backup \(id): failed: \(failure)") } else { logger.info("backup \(id): completed, fingerprint \(fingerprint)") }
        return done
    }

    /// Follows one service to its end, within `timeout`; a failure names the service.
    private func follow(_ p: any BackupParticipant, id: String, timeout: Duration, context: Context) async throws {
        let started = unixMillis()
        update(context, service: p.name, Self.running(id, p.name, phase: "starting", started: started))
        let outcome: ServiceBackupStatus
        do {
            outcome = try await withThrowingTaskGroup(of: ServiceBackupStatus?.self) { group in
                group.addTask {
                    // Its reports reach the status in the order it made them, all before its outcome.
                    try await p.run(backupID: id) { s in self.update(context, service: p.name, s) }
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                guard let first = try await group.next() else { throw CancellationError() }
                group.cancelAll()
                guard let first else {
                    await p.abandon(backupID: id)
                    throw ParticipantError("\(p.name) did not finish its backup within \(timeout)")
                }
                return first
            }
        } catch {
            if Task.isCancelled { throw CancellationError() }
            var s = Self.running(id, p.name, phase: "failed", started: started)
            s.state = .failed
            s.error = "\(error)" + (await gatewayDiagnosis("\(error)"))
            s.finishedAtUnixMs = unixMillis()
            update(context, service: p.name, s)
            throw ParticipantError("\(p.name): \(s.error)")
        }
        update(context, service: p.name, outcome)
        guard outcome.state == .completed else {
            let reason = outcome.error.isEmpty ? "backup \(outcome.state)" : outcome.error
            throw ParticipantError("\(p.name): \(reason)\(await gatewayDiagnosis(reason))")
        }
    }

    /// When a service fails, says whether the gateway is the reason: it does not answer, or the error is a
    /// broken connection to it (it answers again because the supervisor restarted it).
    private func gatewayDiagnosis(_ reason: String = "") async -> String {
        let s3 = config.kit.s3, bucket = config.kit.bucket
        do {
            _ = try await runBlocking(observingCancellation: false) { _ in try s3.headObjectSync(bucket: bucket, key: ".automate-probe") }
            if reason.contains("transport error"), reason.contains(s3.endpoint) {
                return " (the connection to the backup-gateway at \(s3.endpoint) broke; it answers again now: did it restart? see `automate status backup-gateway`)"
            }
            return ""
        } catch let e as S3Error {
            return e.status >= 500 ? " (the backup-gateway at \(s3.endpoint) answers \(e.status))" : ""
        } catch {
            return " (the backup-gateway at \(s3.endpoint) is not answering: \(error))"
        }
    }

    private func makeParticipants(_ stack: StackServices) -> [any BackupParticipant] {
        stack.services.filter(\.takesPartInBackups).map { service -> any BackupParticipant in
            let m = service.manifest
            if m.backup.contract, let socket = service.socketPath {
                return RemoteParticipant(name: m.name, socketPath: socket)
            }
            var owned = OwnedData(databases: m.backup.databases, indices: m.backup.indices, paths: m.backup.paths)
            owned.cluster = m.backup.cluster
            return LocalParticipant(name: m.name, kit: kits.kit(for: m.name, owned: owned, config: config.kit, logger: logger))
        }
    }

    private let kits = KitCache()

    /// The gateway repositories: the bucket, and a search repository per service with indices.
    private func createRepositories(_ stack: StackServices) async throws {
        let withDatabases = stack.services.filter { $0.isBackedUp && !$0.manifest.backup.databases.isEmpty }
        if !withDatabases.isEmpty {
            let client = try await RPCClient.connect(socketPath: config.kit.pgSidecarSocket)
            defer { Task { await client.close() } }
            _ = try await client.call(PGSidecarService.createRepo, Automate_Sidecar_Pg_PGCreateRepoRequest(), timeout: .seconds(30))
        }
        let withIndices = stack.services.filter { $0.isBackedUp && !$0.manifest.backup.indices.isEmpty }
        if !withIndices.isEmpty {
            let client = try await RPCClient.connect(socketPath: config.kit.esSidecarSocket)
            defer { Task { await client.close() } }
            for s in withIndices {
                var req = Automate_Sidecar_Es_ESCreateRepoRequest()
                req.service = s.manifest.name
                _ = try await client.call(ESSidecarService.createRepo, req, timeout: .seconds(30))
            }
        }
    }

    /// checksums.json: the sha256 of every service's metadata.json, read back from the repository.
    private func checksums(id: String, services: [String]) async throws -> [UInt8] {
        var files: [String: String] = [:]
        for service in services {
            let bytes = try await config.kit.s3.getObject(bucket: config.kit.bucket, key: "\(id)/\(service)/metadata.json")
            files["\(service)/metadata.json"] = Checksum.sha256(bytes)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(Checksums(backupID: id, files: files)))
    }

    // MARK: records

    static func running(_ id: String, _ service: String, phase: String, started: Int64) -> ServiceBackupStatus {
        var s = ServiceBackupStatus()
        s.backupID = id; s.service = service; s.state = .running; s.progress.phase = phase; s.startedAtUnixMs = started
        return s
    }

    static func artifact(id: String, service: String, _ a: ArtifactRecord) -> BackupArtifact {
        var x = BackupArtifact()
        x.key = ("\(id)/\(service)/\(a.path)" as NSString).standardizingPath
        x.size = a.size; x.sha256 = a.sha256; x.format = a.format; x.itemCount = a.items ?? 0
        return x
    }

    /// backup-result.json: per-service outcome, sizes, timings, errors.
    static func result(_ s: StackBackup, state: String, error: String) -> [UInt8] {
        let services: [[String: Any]] = s.services.map { svc in
            [
                "service": svc.service, "state": Self.name(svc.state), "error": svc.error,
                "bytes": svc.artifacts.reduce(0) { $0 + $1.size }, "artifacts": svc.artifacts.count,
                "items": svc.artifacts.reduce(0) { $0 + $1.itemCount },
                "duration_ms": svc.finishedAtUnixMs > 0 ? svc.finishedAtUnixMs - svc.startedAtUnixMs : 0,
            ]
        }
        let finished = s.finishedAtUnixMs > 0 ? s.finishedAtUnixMs : unixMillis()
        let object: [String: Any] = [
            "format": "automate-backup-result/1", "backup_id": s.backupID, "state": state, "error": error,
            "started_at_unix_ms": s.startedAtUnixMs, "finished_at_unix_ms": finished,
            "duration_ms": finished - s.startedAtUnixMs, "bytes": s.services.flatMap(\.artifacts).reduce(0) { $0 + $1.size },
            "services": services,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data())
    }

    static func name(_ state: BackupOperationState) -> String {
        switch state {
        case .running: return "running"
        case .completed: return "completed"
        case .failed: return "failed"
        case .cancelled: return "cancelled"
        default: return "unknown"
        }
    }

    static func state(_ name: String) -> BackupOperationState {
        switch name {
        case "running", "in_progress": return .running
        case "completed": return .completed
        case "cancelled": return .cancelled
        default: return .failed
        }
    }

    static func fromRecord(_ b: DeploymentStore.Backup) -> StackBackup {
        var s = StackBackup()
        s.backupID = b.id
        s.state = Self.state(b.state)
        s.error = b.error
        s.startedAtUnixMs = b.startedAt
        s.finishedAtUnixMs = b.finishedAt ?? 0
        s.bytesWritten = UInt64(max(0, b.bytes))
        s.fingerprint = b.fingerprint
        if let json = try? JSONSerialization.jsonObject(with: Data(b.result.utf8)) as? [String: Any],
           let services = json["services"] as? [[String: Any]] {
            s.services = services.map { row in
                var x = ServiceBackupStatus()
                x.backupID = b.id
                x.service = row["service"] as? String ?? ""
                x.state = Self.state(row["state"] as? String ?? "")
                x.error = row["error"] as? String ?? ""
                x.progress.bytesDone = (row["bytes"] as? NSNumber)?.uint64Value ?? 0
                return x
            }
        }
        return s
    }
}

/// One BackupKit per service backed up on its behalf (they keep their operations between calls).
final class KitCache: @unchecked Sendable {
    private let lock = NSLock()
    private var kits: [String: BackupKit] = [:]

    func kit(for name: String, owned: OwnedData, config: KitConfig, logger: Logger) -> BackupKit {
        lock.withLock {
            if let k = kits[name], k.owned == owned { return k }
            var l = logger
            l[metadataKey: "on-behalf-of"] = "\(name)"
            let k = BackupKit(service: name, owned: owned, config: config, logger: l)
            kits[name] = k
            return k
        }
    }
}
