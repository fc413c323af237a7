import AutomateRPC
import AutomateSupervisor
import BackupContract
import BackupRepository
import Foundation
import Logging
import S3Client
import ServiceKit

/// Restores the services of a backup into the running stack: bootstraps its own store from the backup's
/// `deployment-service/` folder, then asks every service present at backup time to restore under the
/// backup id and a restore id (services without the contract are stopped, restored through the sidecars
/// from their manifest's `[backup]` spec, and started again). Short-term status (the service's data is
/// back; until then it refuses its API) and long-term status (search indices loading) are aggregated.
public actor RestoreOrchestrator {
    let config: DeploymentConfig
    let store: DeploymentStore
    let logger: Logger
    private var statuses: [String: StackRestore] = [:]
    private let watchers = StatusBroadcaster<StackRestore>()
    private var running: String?
    private let kits = KitCache()

    public init(config: DeploymentConfig, store: DeploymentStore, logger: Logger) {
        self.config = config
        self.store = store
        self.logger = logger
    }

    /// One service to restore.
    struct Target: Sendable {
        var name: String
        var contract: Bool
        var socketPath: String?
        var owned: OwnedData
    }

    // MARK: API

    public func restore(backupID: String, restoreID: String) async throws -> StackRestore {
        guard BackupID(backupID) != nil else { throw RPCError(.invalidArgument, "\"\(backupID)\" is not a backup id (yyyyMMddHHmmss)") }
        guard !restoreID.isEmpty, restoreID.count <= 64, restoreID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw RPCError(.invalidArgument, "restore_id must be 1 to 64 letters, digits or '-'")
        }
        if let running { throw RPCError(.failedPrecondition, "restore \(running) is running; wait for it (`automate restore status`)") }
        if try statuses[restoreID] != nil || store.restore(restoreID) != nil { throw RPCError(.alreadyExists, "restore id \(restoreID) was used; pick another") }
        let stack: StackServices
        do {
            stack = try StackServices.load(servicesDirectory: config.servicesDirectory, environment: config.environment)
        } catch {
            throw RPCError(.failedPrecondition, "cannot read the stack's manifests in \(config.servicesDirectory): \(error)")
        }
        let present = try await bootstrap(backupID: backupID)
        let targets = try Self.targets(stack: stack, present: present, backupID: backupID)
        var status = StackRestore()
        status.backupID = backupID
        status.restoreID = restoreID
        status.shortTermState = .running
        status.longTermState = .running
        status.startedAtUnixMs = unixMillis()
        for t in targets {
            var s = ServiceRestoreStatus()
            s.backupID = backupID; s.restoreID = restoreID; s.service = t.name; s.state = .running; s.progress.phase = "waiting"
            s.startedAtUnixMs = status.startedAtUnixMs
            status.shortTerm.append(s)
            status.longTerm.append(s)
        }
        statuses[restoreID] = status
        running = restoreID
        journal(status)
        logger.info("restore \(restoreID) of backup \(backupID): \(targets.map(\.name).joined(separator: ", "))")
        Task { await self.perform(restoreID: restoreID, backupID: backupID, targets: targets) }
        return status
    }

    /// A restore's status; empty id: the running one, else the most recent in the store (so the history
    /// survives restarts).
    public func status(_ id: String) throws -> StackRestore {
        let key = id.isEmpty ? (running ?? "") : id
        if let s = statuses[key] { return s }
        let record = try key.isEmpty ? store.latestRestore() : store.restore(key)
        guard let record else {
            throw RPCError(.notFound, id.isEmpty ? "no restore has run yet" : "no restore \(id)")
        }
        return statuses[record.id] ?? Self.fromRecord(record)
    }

    /// At start-up: every restore the store holds as running was cut short by the deployment-service's
    /// stop; each is recorded failed with `reason`. Returns their ids.
    public func failInterrupted(reason: String) throws -> [String] {
        let now = unixMillis()
        var failed: [String] = []
        for record in try store.runningRestores() {
            var s = Self.fromRecord(record)
            s.error = reason
            if s.shortTermState == .running { s.shortTermState = .failed }
            if s.longTermState == .running { s.longTermState = .failed }
            for i in s.shortTerm.indices where s.shortTerm[i].state == .running { s.shortTerm[i].state = .failed; s.shortTerm[i].error = "stopped: \(reason)" }
            for i in s.longTerm.indices where s.longTerm[i].state == .running { s.longTerm[i].state = .failed; s.longTerm[i].error = "stopped: \(reason)" }
            s.finishedAtUnixMs = now
            try store.recordRestore(id: record.id, backupID: record.backupID, shortState: Self.name(s.shortTermState),
                                    longState: Self.name(s.longTermState), startedAt: record.startedAt, finishedAt: now,
                                    error: reason, status: try? s.serializedData())
            failed.append(record.id)
        }
        return failed
    }

    /// A restore as the store recorded it: its last journaled status when there is one.
    static func fromRecord(_ r: DeploymentStore.Restore) -> StackRestore {
        if let data = r.status, var s = try? StackRestore(serializedBytes: data) {
            s.shortTermState = state(r.shortState)
            s.longTermState = state(r.longState)
            s.error = r.error
            s.finishedAtUnixMs = r.finishedAt ?? s.finishedAtUnixMs
            return s
        }
        var s = StackRestore()
        s.restoreID = r.id
        s.backupID = r.backupID
        s.shortTermState = state(r.shortState)
        s.longTermState = state(r.longState)
        s.error = r.error
        s.startedAtUnixMs = r.startedAt
        s.finishedAtUnixMs = r.finishedAt ?? 0
        return s
    }

    static func state(_ name: String) -> BackupOperationState { BackupOrchestrator.state(name) }

    /// Journals the restore's whole status.
    private func journal(_ s: StackRestore) {
        do {
            try store.recordRestore(
                id: s.restoreID, backupID: s.backupID, shortState: Self.name(s.shortTermState), longState: Self.name(s.longTermState),
                startedAt: s.startedAtUnixMs, finishedAt: s.finishedAtUnixMs > 0 ? s.finishedAtUnixMs : nil, error: s.error,
                status: try s.serializedData())
        } catch {
            logger.error("restore \(s.restoreID): could not journal its status in the store: \(error)")
        }
    }

    public func watch(_ id: String) throws -> AsyncStream<StackRestore> {
        let s = try status(id)
        return watchers.stream(s.restoreID, current: s, ended: s.longTermState != .running && s.shortTermState != .running)
    }

    // MARK: bootstrap

    /// Replaces the store with the backup's (sha256 checked against its metadata.json, itself checked
    /// against checksums.json) and returns the services present at backup time; for a phase-one backup
    /// (no deployment-service folder) they are the backup's folders.
    private func bootstrap(backupID: String) async throws -> [DeployedServiceRecord] {
        let s3 = config.kit.s3, bucket = config.kit.bucket
        let status = try? await s3.getObject(bucket: bucket, key: "\(backupID)/.status")
        if let status, String(decoding: status, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) != "completed" {
            throw RPCError(.failedPrecondition, "backup \(backupID) is \(String(decoding: status, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), not completed: it cannot be restored")
        }
        let reader = ServiceRestore(service: "deployment-service", owned: OwnedData(), config: config.kit)
        let metadata: ServiceMetadata
        do {
            metadata = try await reader.metadata(backupID: backupID)
        } catch let e as KitError {
            if e.code == .notFound, status == nil {
                let objects = try await runOnOwnThread { try s3.listObjectsSync(bucket: bucket, prefix: backupID + "/") }
                guard !objects.isEmpty else { throw RPCError(.notFound, "no backup \(backupID) in the repository") }
                // Phase one: the services are the backup's folders.
                let folders = Set(objects.compactMap { o -> String? in
                    let parts = o.key.split(separator: "/")
                    return parts.count >= 3 ? String(parts[1]) : nil
                })
                logger.info("restore of \(backupID): a phase-one backup (no deployment-service folder); services \(folders.sorted())")
                return folders.sorted().map {
                    DeployedServiceRecord(name: $0, kind: "domain", contract: false, dependsOn: [], manifest: "", databases: [], indices: [], paths: [])
                }
            }
            throw RPCError(.failedPrecondition, "\(e)")
        }
        guard let state = metadata.artifacts.first(where: { $0.path == "state.sqlite" }) else {
            throw RPCError(.failedPrecondition, "\(backupID)/deployment-service/metadata.json lists no state.sqlite")
        }
        let bytes = try await s3.getObject(bucket: bucket, key: "\(backupID)/deployment-service/state.sqlite")
        guard UInt64(bytes.count) == state.size, Checksum.sha256(bytes) == state.sha256 else {
            throw RPCError(.failedPrecondition, "\(backupID)/deployment-service/state.sqlite does not match its sha256 in metadata.json")
        }
        let path = NSTemporaryDirectory() + "automate-restore-state-\(UUID().uuidString).sqlite"
        defer { unlink(path) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try store.replace(with: path, restoredBackup: backupID)
        logger.info("restore of \(backupID): store bootstrapped from the backup (\(bytes.count) bytes)")
        return metadata.deployment ?? []
    }

    /// The services to restore: those present at backup time that own data, in start order, as the
    /// current manifests declare them (their folders in this home).
    static func targets(stack: StackServices, present: [DeployedServiceRecord], backupID: String) throws -> [Target] {
        let byName = Dictionary(stack.services.map { ($0.manifest.name, $0) }, uniquingKeysWith: { a, _ in a })
        let missing = present.filter { byName[$0.name] == nil }.map(\.name)
        guard missing.isEmpty else {
            throw RPCError(.failedPrecondition,
                "backup \(backupID) has services this installation has no manifest for: \(missing.joined(separator: ", "))")
        }
        let names = Set(present.map(\.name))
        return stack.services.filter { s in
            s.isBackedUp && names.contains(s.manifest.name)
        }.map { s in
            Target(name: s.manifest.name, contract: s.manifest.backup.contract, socketPath: s.socketPath,
                   owned: OwnedData(databases: s.manifest.backup.databases, indices: s.manifest.backup.indices, paths: s.manifest.backup.paths))
        }
    }

    // MARK: running

    private func perform(restoreID: String, backupID: String, targets: [Target]) async {
        var failure: String?
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var inFlight = 0
                for target in targets {
                    if inFlight >= config.maxParallel {
                        try await group.next()
                        inFlight -= 1
                    }
                    group.addTask { try await self.restoreOne(target, backupID: backupID, restoreID: restoreID) }
                    inFlight += 1
                }
                try await group.waitForAll()
            }
        } catch {
            failure = "\(error)"
        }
        if let failure {
            // A known state: every restored service that is not infrastructure is stopped.
            for t in targets { await supervisor(SupervisorService.stopService, t.name) }
            logger.error("restore \(restoreID): failed: \(failure); the restored services are stopped")
        }
        finish(restoreID, failure: failure)
        if let s = statuses[restoreID] { journal(s) }
    }

    private func restoreOne(_ t: Target, backupID: String, restoreID: String) async throws {
        do {
            if t.contract, let socket = t.socketPath {
                try await restoreRemote(t, socket: socket, backupID: backupID, restoreID: restoreID)
            } else {
                try await restoreLocal(t, backupID: backupID, restoreID: restoreID)
            }
        } catch {
            let message = "\(t.name): \(error)"
            update(restoreID, t.name, short: { s in
                if s.state == .running { s.state = .failed; s.error = message; s.finishedAtUnixMs = unixMillis() }
            }, long: { s in
                if s.state == .running { s.state = .failed; s.error = message; s.finishedAtUnixMs = unixMillis() }
            })
            throw ParticipantError(message)
        }
    }

    /// A contract service: Restore, then its short-term and long-term statuses until each is done.
    private func restoreRemote(_ t: Target, socket: String, backupID: String, restoreID: String) async throws {
        let client: RPCClient
        do { client = try await RPCClient.connect(socketPath: socket) } catch {
            throw ParticipantError("unreachable at \(socket): \(error)")
        }
        defer { Task { await client.close() } }
        var request = Automate_Backup_V1_RestoreRequest()
        request.backupID = backupID
        request.restoreID = restoreID
        _ = try await client.call(BackupService.restore, request, timeout: .seconds(60))
        var statusRequest = Automate_Backup_V1_RestoreStatusRequest()
        statusRequest.restoreID = restoreID
        for (method, long) in [(BackupService.restoreStatusShortTerm, false), (BackupService.restoreStatusLongTerm, true)] {
            while true {
                let s: ServiceRestoreStatus
                do {
                    s = try await client.call(method, statusRequest, timeout: .seconds(30))
                } catch {
                    throw ParticipantError("stopped answering during restore \(restoreID) (did it exit?): \(error)")
                }
                update(restoreID, t.name, short: long ? nil : { $0 = s }, long: long ? { $0 = s } : nil)
                if s.state == .failed || s.state == .cancelled { throw ParticipantError(s.error.isEmpty ? "restore \(s.state)" : s.error) }
                if s.state == .completed { break }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// A service without the contract: stopped, restored in process through the sidecars, started.
    private func restoreLocal(_ t: Target, backupID: String, restoreID: String) async throws {
        await supervisor(SupervisorService.stopService, t.name)
        let kit = kits.kit(for: t.name, owned: t.owned, config: config.kit, logger: logger)
        _ = try await kit.restore(backupID: backupID, restoreID: restoreID)
        var started = false
        while true {
            let short = try await kit.restoreStatus(restoreID, longTerm: false)
            let long = try await kit.restoreStatus(restoreID, longTerm: true)
            update(restoreID, t.name, short: { $0 = short }, long: { $0 = long })
            if short.state == .failed { throw ParticipantError(short.error) }
            if short.state == .completed && !started {
                await supervisor(SupervisorService.startService, t.name)
                started = true
            }
            if long.state == .failed { throw ParticipantError(long.error) }
            if long.state == .completed { return }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Asks the supervisor to stop or start a service (best effort: a restore goes on without it).
    private func supervisor(_ method: RPCUnaryMethod<ControlService.ServiceRequest, ControlService.ServiceResponse>, _ service: String) async {
        guard let socket = config.environment["AUTOMATE_SUPERVISOR_SOCKET"],
              let client = try? await RPCClient.connect(socketPath: socket) else { return }
        var request = ControlService.ServiceRequest()
        request.name = service
        do {
            _ = try await client.call(method, request, timeout: .seconds(120))
        } catch {
            logger.warning("\(method.name) \(service): \(error)")
        }
        await client.close()
    }

    // MARK: status

    private func update(_ id: String, _ service: String, short: ((inout ServiceRestoreStatus) -> Void)?, long: ((inout ServiceRestoreStatus) -> Void)?) {
        guard var s = statuses[id] else { return }
        let before = s.shortTerm.map(\.state) + s.longTerm.map(\.state) + [s.shortTermState]
        if let short, let i = s.shortTerm.firstIndex(where: { $0.service == service }) {
            short(&s.shortTerm[i])
            s.shortTerm[i].service = service
        }
        if let long, let i = s.longTerm.firstIndex(where: { $0.service == service }) {
            long(&s.longTerm[i])
            s.longTerm[i].service = service
        }
        if s.shortTermState == .running, s.shortTerm.allSatisfy({ $0.state == .completed }) { s.shortTermState = .completed }
        publish(s)
        // The journal follows every change of state (not every byte of progress).
        if s.shortTerm.map(\.state) + s.longTerm.map(\.state) + [s.shortTermState] != before { journal(s) }
    }

    private func finish(_ id: String, failure: String?) {
        guard var s = statuses[id] else { return }
        if let failure {
            s.error = failure
            if s.shortTermState == .running { s.shortTermState = .failed }
            s.longTermState = .failed
            for i in s.shortTerm.indices where s.shortTerm[i].state == .running { s.shortTerm[i].state = .cancelled; s.shortTerm[i].error = "stopped: another service failed" }
            for i in s.longTerm.indices where s.longTerm[i].state == .running { s.longTerm[i].state = .cancelled; s.longTerm[i].error = "stopped: another service failed" }
        } else {
            s.shortTermState = .completed
            s.longTermState = .completed
        }
        s.finishedAtUnixMs = unixMillis()
        running = nil
        publish(s)
    }

    private func publish(_ s: StackRestore) {
        statuses[s.restoreID] = s
        watchers.publish(s.restoreID, s, ended: s.longTermState != .running)
    }

    static func name(_ state: BackupOperationState) -> String { BackupOrchestrator.name(state) }
}
