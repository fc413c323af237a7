import AutomateRPC
import BackupContract
import BackupRepository
import Foundation
import Logging
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
    let tracker = OperationTracker()

    public init(service: String, owned: OwnedData, config: KitConfig, logger: Logger) {
        self.service = service
        self.owned = owned
        self.config = config
        self.logger = logger
    }

    // MARK: backups

    /// Starts backing up under `backupID` and returns the RUNNING status at once. ALREADY_EXISTS (with
    /// the status in the message) when that id was already started here.
    public func createBackup(_ backupID: String) async throws -> ServiceBackupStatus {
        guard BackupID(backupID) != nil else {
            throw RPCError(.invalidArgument, "backup_id \"\(backupID)\" is not a UTC time yyyyMMddHHmmss")
        }
        var status = ServiceBackupStatus()
        status.backupID = backupID
        status.service = service
        status.state = .running
        status.startedAtUnixMs = unixMillis()
        status.progress.phase = "starting"
        guard await tracker.insert(status) else {
            let existing = await tracker.backup(backupID)!
            throw RPCError(.alreadyExists, "\(service) already has backup \(backupID) (\(existing.state))")
        }
        let engine = ServiceBackup(service: service, owned: owned, config: config)
        let tracker = self.tracker, logger = self.logger, service = self.service
        logger.info("backup \(backupID): started")
        let task = Task {
            do {
                let metadata = try await engine.run(backupID: backupID) { progress in
                    Task { await tracker.update(backupID) { $0.progress = progress } }
                }
                await tracker.update(backupID) { s in
                    s.state = .completed
                    s.progress.phase = "done"
                    s.finishedAtUnixMs = unixMillis()
                    s.artifacts = metadata.artifacts.map { a in
                        var x = BackupArtifact()
                        x.key = (("\(backupID)/\(service)/" + a.path) as NSString).standardizingPath
                        x.size = a.size; x.sha256 = a.sha256; x.format = a.format; x.itemCount = a.items ?? 0
                        return x
                    }
                }
                logger.info("backup \(backupID): completed, \(metadata.artifacts.count) artifacts")
            } catch {
                let cancelled = Task.isCancelled || error is CancellationError || (error as? KitError).map { if case .cancelled = $0 { return true } else { return false } } == true
                await tracker.update(backupID) { s in
                    s.state = cancelled ? .cancelled : .failed
                    s.error = cancelled ? "cancelled" : "\(error)"
                    s.finishedAtUnixMs = unixMillis()
                }
                logger.error("backup \(backupID): \(cancelled ? "cancelled" : "failed: \(error)")")
            }
        }
        await tracker.attach(backupID, task: task)
        return status
    }

    /// The status of one backup started here (NOT_FOUND otherwise).
    public func backupStatus(_ backupID: String) async throws -> ServiceBackupStatus {
        guard let s = await tracker.backup(backupID) else {
            throw RPCError(.notFound, "\(service) has no backup \(backupID) since it started")
        }
        return s
    }

    /// Updates of one backup until it ends.
    public func watchBackup(_ backupID: String) async throws -> AsyncStream<ServiceBackupStatus> {
        guard let stream = await tracker.watch(backupID) else {
            throw RPCError(.notFound, "\(service) has no backup \(backupID) since it started")
        }
        return stream
    }

    /// Backups of this service: those started since it started, and those in the repository.
    public func listBackups() async throws -> [ServiceBackupStatus] {
        var byID: [String: ServiceBackupStatus] = [:]
        for s in await tracker.allBackups { byID[s.backupID] = s }
        let s3 = config.s3, bucket = config.bucket, service = self.service
        let objects = try await runOnOwnThread { try s3.listObjectsSync(bucket: bucket, prefix: "") }
        for o in objects where o.key.hasSuffix("/\(service)/metadata.json") {
            let id = String(o.key.prefix(while: { $0 != "/" }))
            guard BackupID(id) != nil, byID[id] == nil, o.key == "\(id)/\(service)/metadata.json" else { continue }
            var s = ServiceBackupStatus()
            s.backupID = id; s.service = service; s.state = .completed
            byID[id] = s
        }
        return byID.values.sorted { $0.backupID < $1.backupID }
    }

    /// Cancels a running backup (if any) and deletes what this service wrote under `backupID`.
    public func deleteBackup(_ backupID: String) async throws -> Int {
        guard BackupID(backupID) != nil else { throw RPCError(.invalidArgument, "backup_id \"\(backupID)\" is not yyyyMMddHHmmss") }
        _ = await tracker.cancel(backupID)
        let s3 = config.s3, bucket = config.bucket
        let prefixes = ["\(backupID)/\(service)/", "automate-elasticsearch-data/\(service)/\(backupID)/"]
        let n = try await runOnOwnThread { try prefixes.reduce(0) { $0 + (try s3.deletePrefixSync(bucket: bucket, prefix: $1)) } }
        await tracker.forget(backupID)
        return n
    }

    /// Cancels a running backup; false when none runs under that id.
    public func cancelBackup(_ backupID: String) async -> Bool { await tracker.cancel(backupID) }

    // MARK: restores

    /// Throws UNAVAILABLE while a restore's short-term part runs: a service's own API calls this first,
    /// so that nobody reads or writes data that is being replaced.
    public func requireReady() async throws {
        if let running = await tracker.runningShortTermRestore() {
            throw RPCError(.unavailable,
                "\(service) is restoring backup \(running.backupID) (restore \(running.restoreID)); try again when `automate restore status` says it is done")
        }
    }

    /// Starts restoring `backupID` under `restoreID`; returns the short-term RUNNING status at once.
    public func restore(backupID: String, restoreID: String) async throws -> ServiceRestoreStatus {
        guard BackupID(backupID) != nil, !restoreID.isEmpty else {
            throw RPCError(.invalidArgument, "backup_id must be yyyyMMddHHmmss and restore_id non-empty")
        }
        var short = ServiceRestoreStatus()
        short.backupID = backupID; short.restoreID = restoreID; short.service = service
        short.state = .running; short.startedAtUnixMs = unixMillis(); short.progress.phase = "starting"
        var long = short
        long.progress.phase = "waiting"
        guard await tracker.insertRestore(short, long) else {
            throw RPCError(.alreadyExists, "\(service) is already restoring (or has restored) under restore id \(restoreID)")
        }
        let engine = ServiceRestore(service: service, owned: owned, config: config)
        let tracker = self.tracker, logger = self.logger
        logger.info("restore \(restoreID) of backup \(backupID): started")
        let task = Task {
            do {
                try await engine.run(backupID: backupID, restoreID: restoreID, listener: .init(
                    shortTerm: { p in Task { await tracker.updateRestore(restoreID, short: { $0.progress = p }) } },
                    longTerm: { p in Task { await tracker.updateRestore(restoreID, long: { $0.progress = p }) } },
                    shortTermDone: {
                        Task {
                            await tracker.updateRestore(restoreID, short: { s in
                                s.state = .completed; s.progress.phase = "done"; s.finishedAtUnixMs = unixMillis()
                            })
                        }
                    }))
                await tracker.updateRestore(restoreID, short: { s in
                    s.state = .completed; s.progress.phase = "done"; s.finishedAtUnixMs = unixMillis()
                }, long: { s in
                    s.state = .completed; s.progress.phase = "done"; s.finishedAtUnixMs = unixMillis()
                })
                logger.info("restore \(restoreID): completed")
            } catch {
                let message = "\(error)"
                await tracker.updateRestore(restoreID, short: { s in
                    s.state = .failed; s.error = message; s.finishedAtUnixMs = unixMillis()
                }, long: { s in
                    s.state = .failed; s.error = message; s.finishedAtUnixMs = unixMillis()
                })
                logger.error("restore \(restoreID): failed: \(message)")
            }
        }
        await tracker.attachRestore(restoreID, task: task)
        return short
    }

    /// The short-term (`longTerm` false) or long-term status of a restore.
    public func restoreStatus(_ restoreID: String, longTerm: Bool) async throws -> ServiceRestoreStatus {
        guard let r = await tracker.restore(restoreID) else {
            throw RPCError(.notFound, "\(service) has no restore \(restoreID) since it started")
        }
        return longTerm ? r.long : r.short
    }

    // MARK: RPC

    /// Serves the backup contract on `server` (method names in ``BackupContract``).
    public func register(on server: RPCServer) {
        server.registerUnary(BackupContract.createBackup) { [self] (req: Automate_Backup_V1_CreateBackupRequest, _) -> ServiceBackupStatus in
            try await createBackup(req.backupID)
        }
        server.registerUnary(BackupContract.backupStatus) { [self] (req: Automate_Backup_V1_BackupStatusRequest, _) -> ServiceBackupStatus in
            try await backupStatus(req.backupID)
        }
        server.registerServerStream(BackupContract.watchBackup) { [self] (req: Automate_Backup_V1_BackupStatusRequest, writer: RPCResponseWriter<ServiceBackupStatus>, _) in
            for await s in try await watchBackup(req.backupID) { try await writer.send(s) }
        }
        server.registerUnary(BackupContract.listBackups) { [self] (_: Automate_Backup_V1_ListBackupsRequest, _) -> Automate_Backup_V1_ListBackupsResponse in
            var r = Automate_Backup_V1_ListBackupsResponse()
            r.backups = try await listBackups()
            return r
        }
        server.registerUnary(BackupContract.deleteBackup) { [self] (req: Automate_Backup_V1_DeleteBackupRequest, _) -> Automate_Backup_V1_DeleteBackupResponse in
            _ = try await deleteBackup(req.backupID)
            return Automate_Backup_V1_DeleteBackupResponse()
        }
        server.registerUnary(BackupContract.restore) { [self] (req: Automate_Backup_V1_RestoreRequest, _) -> ServiceRestoreStatus in
            try await restore(backupID: req.backupID, restoreID: req.restoreID)
        }
        server.registerUnary(BackupContract.restoreStatusShortTerm) { [self] (req: Automate_Backup_V1_RestoreStatusRequest, _) -> ServiceRestoreStatus in
            try await restoreStatus(req.restoreID, longTerm: false)
        }
        server.registerUnary(BackupContract.restoreStatusLongTerm) { [self] (req: Automate_Backup_V1_RestoreStatusRequest, _) -> ServiceRestoreStatus in
            try await restoreStatus(req.restoreID, longTerm: true)
        }
    }
}
