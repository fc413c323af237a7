import AutomateRPC
import BackupContract
import BackupRepository
import Foundation
import Logging
import Operations
import S3Client

/// Implements the backup contract for a service that declares what it owns: create (databases, indices
/// and paths at once, metadata.json last), status and watch, list, delete, restore with short-term and
/// long-term status. Serve it on the service's RPC server with ``register(on:)``, or call it in process
/// (the deployment-service does so for services that do not implement the contract themselves).
public final class BackupKit: Sendable {
    public let service: String
    public let owned: OwnedData
    public let config: KitConfig
    let logger: Logger
    /// This service's backups since it started, by backup id.
    let backups: OperationRegistry<ServiceMetadata>
    /// This service's restores since it started, by restore id.
    let restores: OperationRegistry<Void>

    public init(service: String, owned: OwnedData, config: KitConfig, logger: Logger) {
        self.service = service
        self.owned = owned
        self.config = config
        self.logger = logger
        self.backups = OperationRegistry(owner: service)
        self.restores = OperationRegistry(owner: service)
    }

    // MARK: backups

    /// Starts backing up under `backupID` and returns the RUNNING status at once. ALREADY_EXISTS (with
    /// the status in the message) when that id was already started here.
    public func createBackup(_ backupID: String) async throws -> ServiceBackupStatus {
        guard BackupID(backupID) != nil else {
            throw RPCError(.invalidArgument, "backup_id \"\(backupID)\" is not a UTC time yyyyMMddHHmmss")
        }
        if let hold = await pendingHold() { throw heldError(hold) }
        let engine = ServiceBackup(service: service, owned: owned, config: config)
        let logger = self.logger
        do {
            try await backups.start(id: backupID, kind: "backup", initial: OperationProgress(phase: .preparing, step: "starting")) { context in
                logger.info("backup \(backupID): started")
                do {
                    let metadata = try await engine.run(backupID: backupID, context: context)
                    logger.info("backup \(backupID): completed, \(metadata.artifacts.count) artifacts")
                    return metadata
                } catch {
                    if Task.isCancelled || (error as? KitError)?.code == .cancelled {
                        logger.notice("backup \(backupID): cancelled")
                        throw CancellationError()
                    }
                    logger.error("backup \(backupID): failed: \(error)")
                    throw error
                }
            }
        } catch let e as OperationError where e.code == .alreadyExists {
            let existing = try await backupStatus(backupID)
            throw RPCError(.alreadyExists, "\(service) already has backup \(backupID) (\(existing.state))")
        }
        return try await backupStatus(backupID)
    }

    /// The status of one backup started here (NOT_FOUND otherwise).
    public func backupStatus(_ backupID: String) async throws -> ServiceBackupStatus {
        guard let s = try? await backups.status(backupID) else {
            throw RPCError(.notFound, "\(service) has no backup \(backupID) since it started")
        }
        return Self.backupStatus(s, service: service)
    }

    /// The backup's current status, then every change in order, until it ends.
    public func watchBackup(_ backupID: String) async throws -> AsyncStream<ServiceBackupStatus> {
        guard let updates = try? await backups.watch(backupID) else {
            throw RPCError(.notFound, "\(service) has no backup \(backupID) since it started")
        }
        let service = self.service
        let (stream, continuation) = AsyncStream<ServiceBackupStatus>.makeStream(bufferingPolicy: .unbounded)
        // One consumer, in order: the statuses leave in the order the registry applied them.
        let relay = Task {
            for await s in updates { continuation.yield(Self.backupStatus(s, service: service)) }
            continuation.finish()
        }
        continuation.onTermination = { _ in relay.cancel() }
        return stream
    }

    /// Backups of this service: those started since it started, and those in the repository.
    public func listBackups() async throws -> [ServiceBackupStatus] {
        var byID: [String: ServiceBackupStatus] = [:]
        for s in await backups.list() { byID[s.id] = Self.backupStatus(s, service: service) }
        let s3 = config.s3, bucket = config.bucket, service = self.service
        let objects = try await runBlocking("kit.list") { _ in try s3.listObjectsSync(bucket: bucket, prefix: "") }
        for o in objects where o.key.hasSuffix("/\(service)/metadata.json") {
            let id = String(o.key.prefix(while: { $0 != "/" }))
            guard BackupID(id) != nil, byID[id] == nil, o.key == "\(id)/\(service)/metadata.json" else { continue }
            var s = ServiceBackupStatus()
            s.backupID = id; s.service = service; s.state = .completed
            byID[id] = s
        }
        return byID.values.sorted { $0.backupID < $1.backupID }
    }

    /// Cancels a running backup (if any; its sidecar work and tools stop first) and deletes what this
    /// service wrote under `backupID`.
    public func deleteBackup(_ backupID: String) async throws -> Int {
        guard BackupID(backupID) != nil else { throw RPCError(.invalidArgument, "backup_id \"\(backupID)\" is not yyyyMMddHHmmss") }
        if (try? await backups.cancel(backupID)) != nil { _ = try? await backups.wait(backupID) }
        let s3 = config.s3, bucket = config.bucket
        let prefixes = ["\(backupID)/\(service)/", "automate-elasticsearch-data/\(service)/\(backupID)/"]
        let n = try await runBlocking("kit.delete") { _ in try prefixes.reduce(0) { $0 + (try s3.deletePrefixSync(bucket: bucket, prefix: $1)) } }
        await backups.remove(backupID)
        return n
    }

    /// Cancels a running backup: the sidecars are told (their tools are killed, their uploads aborted) and
    /// tar is killed. False when none runs under that id.
    public func cancelBackup(_ backupID: String) async -> Bool {
        guard let s = try? await backups.cancel(backupID) else { return false }
        return !s.isTerminal
    }

    // MARK: restores

    /// Throws UNAVAILABLE while a restore's short-term part runs, and from a start held down for a
    /// restore (``KitConfig/hold``) until that restore's short-term part is done: a service's own API
    /// calls this first, so that nobody reads or writes data that is being replaced or not yet back.
    public func requireReady() async throws {
        if let hold = await pendingHold() { throw heldError(hold) }
        if let running = await restores.list().first(where: { !$0.isTerminal && $0.progress.phase < .loading }) {
            throw RPCError(.unavailable,
                "\(service) is restoring backup \(running.labels["backup_id"] ?? "?") (restore \(running.id)); try again when `automate restore status` says it is done")
        }
    }

    /// The hold this service was started with, while its restore's short-term part is not done.
    private func pendingHold() async -> RestoreHold? {
        guard let hold = config.hold else { return nil }
        guard let s = try? await restores.status(hold.restoreID) else { return hold }
        return Self.restoreStatus(s, service: service, longTerm: false).state == .completed ? nil : hold
    }

    private func heldError(_ hold: RestoreHold) -> RPCError {
        RPCError(.unavailable,
            "\(service) is held down for restore \(hold.restoreID) of backup \(hold.backupID) until its data is back; try again when `automate restore status \(hold.restoreID)` says its short-term part is done")
    }

    /// A held service's answer for its restore before `Restore` was called: RUNNING, phase `held`.
    private func heldStatus(_ hold: RestoreHold) -> ServiceRestoreStatus {
        var r = ServiceRestoreStatus()
        r.backupID = hold.backupID
        r.restoreID = hold.restoreID
        r.service = service
        r.state = .running
        r.progress.phase = RestoreHold.heldPhase
        return r
    }

    /// Starts restoring `backupID` under `restoreID`; returns the short-term RUNNING status at once. A
    /// service started held down for a restore accepts only that restore. `keepDatabases`: leave the
    /// databases as a point-in-time recovery left them (see ``ServiceRestore/run(backupID:restoreID:context:keepDatabases:)``).
    public func restore(backupID: String, restoreID: String, keepDatabases: Bool = false) async throws -> ServiceRestoreStatus {
        guard BackupID(backupID) != nil, !restoreID.isEmpty else {
            throw RPCError(.invalidArgument, "backup_id must be yyyyMMddHHmmss and restore_id non-empty")
        }
        if let hold = config.hold, hold.restoreID != restoreID || hold.backupID != backupID {
            throw RPCError(.failedPrecondition,
                "\(service) was started held down for restore \(hold.restoreID) of backup \(hold.backupID); it accepts only that restore, not \(restoreID) of \(backupID)")
        }
        if let existing = try? await restores.status(restoreID), !existing.isTerminal || existing.result != nil {
            throw RPCError(.alreadyExists, "\(service) is already restoring (or has restored) under restore id \(restoreID)")
        }
        let engine = ServiceRestore(service: service, owned: owned, config: config)
        let logger = self.logger
        do {
            try await restores.start(
                id: restoreID, replacingEnded: true, kind: "restore", labels: ["backup_id": backupID],
                initial: OperationProgress(phase: .preparing, step: "starting")
            ) { context in
                logger.info("restore \(restoreID) of backup \(backupID): started")
                do {
                    try await engine.run(backupID: backupID, restoreID: restoreID, context: context, keepDatabases: keepDatabases)
                    logger.info("restore \(restoreID): completed")
                } catch {
                    logger.error("restore \(restoreID): failed: \(error)")
                    throw error
                }
            }
        } catch let e as OperationError where e.code == .alreadyExists {
            throw RPCError(.alreadyExists, "\(service) is already restoring under restore id \(restoreID)")
        }
        return try await restoreStatus(restoreID, longTerm: false)
    }

    /// The short-term (`longTerm` false) or long-term status of a restore. For the restore this service
    /// was started held down for, RUNNING in phase `held` until `Restore` is called.
    public func restoreStatus(_ restoreID: String, longTerm: Bool) async throws -> ServiceRestoreStatus {
        guard let s = try? await restores.status(restoreID) else {
            if let hold = config.hold, hold.restoreID == restoreID { return heldStatus(hold) }
            throw RPCError(.notFound, "\(service) has no restore \(restoreID) since it started")
        }
        return Self.restoreStatus(s, service: service, longTerm: longTerm)
    }

    /// A restore's short-term (`longTerm` false) or long-term status, then every change in order, until
    /// that part ends. The held status alone (then the end) for a held restore not begun yet.
    public func watchRestore(_ restoreID: String, longTerm: Bool) async throws -> AsyncStream<ServiceRestoreStatus> {
        let service = self.service
        guard let updates = try? await restores.watch(restoreID) else {
            let held = try await restoreStatus(restoreID, longTerm: longTerm)
            return AsyncStream { $0.yield(held); $0.finish() }
        }
        let (stream, continuation) = AsyncStream<ServiceRestoreStatus>.makeStream(bufferingPolicy: .unbounded)
        let relay = Task {
            var last: ServiceRestoreStatus?
            for await s in updates {
                let part = Self.restoreStatus(s, service: service, longTerm: longTerm)
                if part != last { continuation.yield(part); last = part }
                if part.state != .running { break }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in relay.cancel() }
        return stream
    }

    // MARK: RPC

    /// Serves the backup contract on `server` (method names in ``BackupContract``).
    public func register(on server: RPCServer) {
        server.register(BackupService.createBackup) { [self] (req: Automate_Backup_V1_CreateBackupRequest, _) -> ServiceBackupStatus in
            try await createBackup(req.backupID)
        }
        server.register(BackupService.backupStatus) { [self] (req: Automate_Backup_V1_BackupStatusRequest, _) -> ServiceBackupStatus in
            try await backupStatus(req.backupID)
        }
        server.register(BackupService.watchBackup) { [self] (req: Automate_Backup_V1_BackupStatusRequest, writer: RPCResponseWriter<ServiceBackupStatus>, _) in
            for await s in try await watchBackup(req.backupID) { try await writer.send(s) }
        }
        server.register(BackupService.listBackups) { [self] (_: Automate_Backup_V1_ListBackupsRequest, _) -> Automate_Backup_V1_ListBackupsResponse in
            var r = Automate_Backup_V1_ListBackupsResponse()
            r.backups = try await listBackups()
            return r
        }
        server.register(BackupService.deleteBackup) { [self] (req: Automate_Backup_V1_DeleteBackupRequest, _) -> Automate_Backup_V1_DeleteBackupResponse in
            _ = try await deleteBackup(req.backupID)
            return Automate_Backup_V1_DeleteBackupResponse()
        }
        server.register(BackupService.restore) { [self] (req: Automate_Backup_V1_RestoreRequest, _) -> ServiceRestoreStatus in
            try await restore(backupID: req.backupID, restoreID: req.restoreID, keepDatabases: req.keepDatabases)
        }
        server.register(BackupService.restoreStatusShortTerm) { [self] (req: Automate_Backup_V1_RestoreStatusRequest, _) -> ServiceRestoreStatus in
            try await restoreStatus(req.restoreID, longTerm: false)
        }
        server.register(BackupService.restoreStatusLongTerm) { [self] (req: Automate_Backup_V1_RestoreStatusRequest, _) -> ServiceRestoreStatus in
            try await restoreStatus(req.restoreID, longTerm: true)
        }
        for (method, longTerm) in [(BackupService.watchRestoreShortTerm, false), (BackupService.watchRestoreLongTerm, true)] {
            server.register(method) { [self] (req: Automate_Backup_V1_RestoreStatusRequest, writer: RPCResponseWriter<ServiceRestoreStatus>, _) in
                for await s in try await watchRestore(req.restoreID, longTerm: longTerm) { try await writer.send(s) }
            }
        }
    }
}
