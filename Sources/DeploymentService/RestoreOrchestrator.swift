import AutomateRPC
import AutomateSupervisor
import BackupContract
import BackupRepository
import Foundation
import Logging
import Operations
import S3Client
import ServiceKit
import SidecarProto

/// Restores a backup by relaunching the stack from it, in the blueprint's order. The supervisor runs
/// only the gateway and this service (the others are `held`); the restore reads and checks the backup's
/// `deployment-service/` folder and the services it records, and only then replaces its own store. Then
/// it brings the stack up in dependency order, each service as soon as everything it depends on is up
/// (and, for a service with data, restored), at most `max_parallel` at a time:
///
/// - infrastructure, sidecars and services without data are started and awaited;
/// - a service implementing the contract is started held down for the restore (``RestoreHold``), must
///   answer that it is held, then restores itself (`Restore`, followed over `WatchRestoreShortTerm`);
///   its hold is released once its short-term part is done;
/// - a service without the contract is restored through the sidecars while it is down, then started.
///
/// A service that cannot be stopped or held down, or whose short-term restore fails, fails the restore;
/// the services it restored are stopped again. Long-term parts (search indices loading) are followed to
/// their end while the services run.
public actor RestoreOrchestrator {
    let config: DeploymentConfig
    let store: DeploymentStore
    let logger: Logger
    /// Each restore is an operation of the stack's one operation layer: its status changes one update at a
    /// time, in order, watched as a stream of every change. Restores it no longer holds come from the store.
    private let operations = ProgressRegistry<StackRestore, StackRestore>(owner: "deployment-service", keepEnded: 20)
    typealias Context = ProgressContext<StackRestore>
    /// The running restore's id, and how it reports.
    private var running: String?
    private var context: Context?
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

    /// `pointInTime`: a point-in-time recovery (see ``recoverCluster(_:target:backupID:restoreID:supervisor:)``).
    public func restore(backupID: String, restoreID: String, pointInTime: PointInTimeTarget? = nil) async throws -> StackRestore {
        guard BackupID(backupID) != nil else { throw RPCError(.invalidArgument, "\"\(backupID)\" is not a backup id (yyyyMMddHHmmss)") }
        guard !restoreID.isEmpty, restoreID.count <= 64, restoreID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw RPCError(.invalidArgument, "restore_id must be 1 to 64 letters, digits or '-'")
        }
        if let running { throw RPCError(.failedPrecondition, "restore \(running) is running; wait for it (`automate restore status`)") }
        if try await held(restoreID) != nil || store.restore(restoreID) != nil { throw RPCError(.alreadyExists, "restore id \(restoreID) was used; pick another") }
        let stack: StackServices
        do {
            stack = try StackServices.load(servicesDirectory: config.servicesDirectory, environment: config.environment)
        } catch {
            throw RPCError(.failedPrecondition, "cannot read the stack's manifests in \(config.servicesDirectory): \(error)")
        }
        // Everything is read and checked before anything changes: the backup's records, the services
        // it names, the supervisor that will relaunch them.
        let supervisor = try SupervisorLink.fromEnvironment(config.environment)
        let bootstrap = try await readBootstrap(backupID: backupID)
        defer { if let file = bootstrap.storeFile { for f in [file, file + "-wal", file + "-shm"] { unlink(f) } } }  // SQLite's side files too
        // The services come back as the backup recorded them: its manifests say what each one owned (so what
        // is restored) and how it is started, within what the stack's own manifests allow.
        let relaunched: StackServices
        do {
            relaunched = try stack.relaunching(from: bootstrap.manifests, source: Self.manifestSource(backupID))
        } catch {
            throw RPCError(.failedPrecondition, "backup \(backupID)'s manifests cannot be relaunched on this stack; nothing was changed:\n\(error)")
        }
        let targets = try Self.targets(stack: relaunched, present: bootstrap.present, backupID: backupID)
        let pgSidecar = Self.serviceName(socket: config.kit.pgSidecarSocket)
        var recovery: Recovery? = nil
        if let pointInTime { recovery = try await checkedRecovery(pointInTime, stack: relaunched, backupID: backupID, pgSidecar: pgSidecar) }
        let plan = Self.plan(stack: relaunched, targets: targets, pgSidecar: pgSidecar,
                             esSidecar: Self.serviceName(socket: config.kit.esSidecarSocket),
                             manifests: bootstrap.manifests, source: Self.manifestSource(backupID), recovery: recovery)
        _ = try await supervisor.status(plan.first?.name ?? "deployment-service")
        if let file = bootstrap.storeFile {
            try store.replace(with: file, restoredBackup: backupID)
            logger.info("restore of \(backupID): store bootstrapped from the backup")
        }
        var status = StackRestore()
        status.backupID = backupID
        status.restoreID = restoreID
        status.shortTermState = .running
        status.longTermState = .running
        status.startedAtUnixMs = unixMillis()
        if let recovery {
            status.recovery.service = recovery.service
            status.recovery.baseBackupID = backupID
            status.recovery.target = recovery.target
        }
        for t in (recovery.map { [$0.service] } ?? []) + targets.map({ $0.name }) {
            var s = ServiceRestoreStatus()
            s.backupID = backupID; s.restoreID = restoreID; s.service = t; s.state = .running; s.progress.phase = "waiting"
            s.startedAtUnixMs = status.startedAtUnixMs
            status.shortTerm.append(s)
            status.longTerm.append(s)
        }
        running = restoreID
        Self.journal(store, logger, status)
        logger.info("restore \(restoreID) of backup \(backupID): relaunching \(plan.map(\.name).joined(separator: ", ")) (\(bootstrap.manifests.isEmpty ? "with the stack's manifests: the backup has none" : "from the backup's manifests")); restoring \(targets.map(\.name).joined(separator: ", "))")
        do {
            try await operations.start(id: restoreID, kind: "restore", labels: ["backup_id": backupID], initial: status) { context in
                await self.perform(restoreID: restoreID, backupID: backupID, plan: plan, supervisor: supervisor, context: context)
            }
        } catch {
            running = nil
            throw error
        }
        return status
    }

    /// A restore's status; empty id: the running one, else the most recent in the store (so the history
    /// survives restarts).
    public func status(_ id: String) async throws -> StackRestore {
        let key = id.isEmpty ? (running ?? "") : id
        if !key.isEmpty, let s = await held(key) { return s }
        let record = try key.isEmpty ? store.latestRestore() : store.restore(key)
        guard let record else {
            throw RPCError(.notFound, id.isEmpty ? "no restore has run yet" : "no restore \(id)")
        }
        if let s = await held(record.id) { return s }
        return Self.fromRecord(record)
    }

    /// The status of a restore the operation layer still holds (it ran since this process started).
    private func held(_ id: String) async -> StackRestore? {
        guard let snapshot = try? await operations.status(id) else { return nil }
        return snapshot.status
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
    private static func journal(_ store: DeploymentStore, _ logger: Logger, _ s: StackRestore) {
        do {
            try store.recordRestore(
                id: s.restoreID, backupID: s.backupID, shortState: Self.name(s.shortTermState), longState: Self.name(s.longTermState),
                startedAt: s.startedAtUnixMs, finishedAt: s.finishedAtUnixMs > 0 ? s.finishedAtUnixMs : nil, error: s.error,
                status: try s.serializedData())
        } catch {
            logger.error("restore \(s.restoreID): could not journal its status in the store: \(error)")
        }
    }

    /// The restore's status, then every change in order, until it ends.
    public func watch(_ id: String) async throws -> AsyncStream<StackRestore> {
        let s = try await status(id)
        guard s.longTermState == .running || s.shortTermState == .running, let updates = try? await operations.statuses(s.restoreID) else {
            return AsyncStream { $0.yield(s); $0.finish() }
        }
        return updates
    }

    // MARK: bootstrap

    /// What the backup's `deployment-service/` folder holds: the services present at backup time and,
    /// checked against its metadata.json (itself checked against checksums.json), its store in a
    /// temporary file. For a phase-one backup (no such folder) the services are the backup's folders.
    struct Bootstrap: Sendable {
        var present: [DeployedServiceRecord]
        var storeFile: String?
        /// The manifest of every service deployed at backup time (`manifests/<name>.toml`), by name.
        var manifests: [String: String] = [:]
    }

    /// How the backup's manifests are named in errors and in the supervisor's log.
    static func manifestSource(_ backupID: String) -> String { "backup \(backupID): deployment-service/" }

    private func readBootstrap(backupID: String) async throws -> Bootstrap {
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
                let objects = try await runBlocking(observingCancellation: false) { _ in try s3.listObjectsSync(bucket: bucket, prefix: backupID + "/") }
                guard !objects.isEmpty else { throw RPCError(.notFound, "no backup \(backupID) in the repository") }
                // Phase one: the services are the backup's folders.
                let folders = Set(objects.compactMap { o -> String? in
                    let parts = o.key.split(separator: "/")
                    return parts.count >= 3 ? String(parts[1]) : nil
                })
                logger.info("restore of \(backupID): a phase-one backup (no deployment-service folder); services \(folders.sorted())")
                return Bootstrap(present: folders.sorted().map {
                    DeployedServiceRecord(name: $0, kind: "domain", contract: false, dependsOn: [], manifest: "", databases: [], indices: [], paths: [])
                })
            }
            throw RPCError(.failedPrecondition, "\(e)")
        }
        guard let state = metadata.artifacts.first(where: { $0.path == "state.sqlite" }) else {
            throw RPCError(.failedPrecondition, "\(backupID)/deployment-service/metadata.json lists no state.sqlite")
        }
        let repository = config.kit.artifacts
        let bytes: [UInt8]
        do {
            bytes = try await runBlocking("deployment.restore-state") { _ -> [UInt8] in
                var out: [UInt8] = []
                try repository.reader().read(key: "\(backupID)/deployment-service/state.sqlite", chunks: state.chunks) { out += $0 }
                return out
            }
        } catch {
            throw RPCError(.failedPrecondition, "cannot read \(backupID)/deployment-service/state.sqlite: \(error)")
        }
        // A chunked copy was checked as it was read (each chunk, then the whole against its record).
        guard state.chunks != nil || (UInt64(bytes.count) == state.size && Checksum.sha256(bytes) == state.sha256) else {
            throw RPCError(.failedPrecondition, "\(backupID)/deployment-service/state.sqlite does not match its sha256 in metadata.json")
        }
        var manifests: [String: String] = [:]
        for record in metadata.deployment ?? [] where !record.manifest.isEmpty {
            guard let artifact = metadata.artifacts.first(where: { $0.path == record.manifest }) else {
                throw RPCError(.failedPrecondition, "\(backupID)/deployment-service/metadata.json lists no \(record.manifest) for \(record.name)")
            }
            let text = try await s3.getObject(bucket: bucket, key: "\(backupID)/deployment-service/\(record.manifest)")
            guard UInt64(text.count) == artifact.size, Checksum.sha256(text) == artifact.sha256 else {
                throw RPCError(.failedPrecondition, "\(backupID)/deployment-service/\(record.manifest) does not match its sha256 in metadata.json")
            }
            manifests[record.name] = String(decoding: text, as: UTF8.self)
        }
        let path = NSTemporaryDirectory() + "automate-restore-state-\(UUID().uuidString).sqlite"
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            unlink(path)
            throw RPCError(.internal, "cannot write the backup's store to \(path): \(error)")
        }
        return Bootstrap(present: metadata.deployment ?? [], storeFile: path, manifests: manifests)
    }

    /// The services to restore: those present at backup time that own data, in start order, as `stack`
    /// declares them (the backup's manifests where it has them; their folders in this home).
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

    // MARK: the relaunch plan

    /// How one service comes back.
    enum Role: Sendable {
        /// Started (or left running) and awaited: infrastructure, sidecars, services with nothing to restore.
        case start
        /// Started held down for the restore, then restored through its own contract.
        case restoreHeld(Target)
        /// Restored through the sidecars while it is down, then started.
        case restoreStopped(Target)
        /// The cluster server of a point-in-time recovery: rebuilt from the backup's base backup, WAL
        /// replayed to the target, promoted.
        case recoverCluster(PointInTimeTarget)
        /// Started at once, not waiting for its dependencies: the pg-sidecar of a point-in-time
        /// recovery, which the recovering server reads its base backup and WAL through.
        case startWithoutDependencies
    }

    /// A point-in-time recovery, checked: the cluster server it rebuilds and where it stops.
    struct Recovery: Sendable {
        var service: String
        var target: PointInTimeTarget
        var pgSidecar: String
    }

    /// One service of the relaunch.
    struct Step: Sendable {
        var name: String
        var dependsOn: [String]
        var role: Role
        /// The manifest the supervisor starts it with (the backup's), nil for the one it has.
        var launch: Launch? = nil
    }

    /// Every service of the stack but this orchestrator, in start order, with how it comes back. A
    /// restored service also waits for the sidecars that restore its data (`pgSidecar` for databases,
    /// `esSidecar` for indices), whether or not its manifest names them.
    /// `manifests` are the texts services start with (by name), found in `source` (`backup <id>:
    /// deployment-service/`).
    /// With `recovery`, the cluster server is recovered (after the pg-sidecar, which starts first, not
    /// waiting for it) and the restored services keep their databases as it left them.
    static func plan(stack: StackServices, targets: [Target], pgSidecar: String, esSidecar: String,
                     manifests: [String: String] = [:], source: String = "", recovery: Recovery? = nil) -> [Step] {
        let byName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        return stack.services.filter { $0.manifest.kind != .orchestrator }.map { s in
            var dependsOn = s.manifest.dependsOn
            let manifest = manifests[s.manifest.name].map { Launch(manifest: $0, path: source + "manifests/\(s.manifest.name).toml") }
            if let recovery {
                if s.manifest.name == recovery.service {
                    return Step(name: s.manifest.name, dependsOn: dependsOn.filter { $0 != pgSidecar } + [pgSidecar],
                                role: .recoverCluster(recovery.target), launch: manifest)
                }
                if s.manifest.name == pgSidecar {
                    return Step(name: s.manifest.name, dependsOn: dependsOn.filter { $0 != recovery.service }, role: .startWithoutDependencies,
                                launch: manifest)
                }
            }
            guard let t = byName[s.manifest.name] else { return Step(name: s.manifest.name, dependsOn: dependsOn, role: .start, launch: manifest) }
            if !t.owned.databases.isEmpty && !dependsOn.contains(pgSidecar) { dependsOn.append(pgSidecar) }
            if let recovery, !t.owned.databases.isEmpty, !dependsOn.contains(recovery.service) { dependsOn.append(recovery.service) }
            if !t.owned.indices.isEmpty && !dependsOn.contains(esSidecar) { dependsOn.append(esSidecar) }
            return Step(name: t.name, dependsOn: dependsOn, role: t.contract && t.socketPath != nil ? .restoreHeld(t) : .restoreStopped(t),
                        launch: manifest)
        }
    }

    /// A sidecar's service name, from the socket the kit reaches it on (`<run>/<name>.sock`).
    static func serviceName(socket: String) -> String {
        let file = socket.split(separator: "/").last.map(String.init) ?? socket
        return file.hasSuffix(".sock") ? String(file.dropLast(5)) : file
    }

    /// The steps of `plan` that can start now: not started, and every dependency that is part of the
    /// plan done (a dependency outside it is already running: the gateway).
    static func ready(_ plan: [Step], started: Set<String>, done: Set<String>) -> [Step] {
        let names = Set(plan.map(\.name))
        return plan.filter { step in
            !started.contains(step.name) && step.dependsOn.allSatisfy { !names.contains($0) || done.contains($0) }
        }
    }

    // MARK: running

    /// What is left of a service's restore once its short-term part is done: following its long-term part.
    typealias LongTerm = @Sendable () async throws -> Void

    private func perform(restoreID: String, backupID: String, plan: [Step], supervisor: SupervisorLink, context: Context) async -> StackRestore {
        self.context = context
        let recovering = plan.contains { if case .recoverCluster = $0.role { true } else { false } }
        var failure: String?
        do {
            try await withThrowingTaskGroup(of: Void.self) { longTerms in
                // Each service starts once what it depends on is up: a slow start (the search engine)
                // or restore holds back only what needs it.
                try await withThrowingTaskGroup(of: (String, LongTerm?).self) { group in
                    var started = Set<String>(), done = Set<String>()
                    var inFlight = 0
                    while done.count < plan.count {
                        for step in Self.ready(plan, started: started, done: done) where inFlight < config.maxParallel {
                            started.insert(step.name)
                            inFlight += 1
                            group.addTask {
                        (step.name, try await self.bringUp(step, backupID: backupID, restoreID: restoreID, supervisor: supervisor, keepDatabases: recovering))
                    }
                        }
                        guard let (name, follow) = try await group.next() else {
                            let stuck = plan.map(\.name).filter { !done.contains($0) }
                            throw ParticipantError("the services \(stuck.joined(separator: ", ")) depend on each other in a cycle: none can start first")
                        }
                        inFlight -= 1
                        done.insert(name)
                        if let follow { longTerms.addTask(operation: follow) }
                    }
                }
                logger.info("restore \(restoreID): every service is up; short-term part done")
                shortTermDone(restoreID)
                try await longTerms.waitForAll()
            }
        } catch {
            failure = "\(error)"
        }
        if let failure {
            // A known state: every service the restore was bringing back is stopped again.
            for step in plan.reversed() {
                switch step.role {
                case .start, .startWithoutDependencies: continue
                case .restoreHeld, .restoreStopped, .recoverCluster: break
                }
                do { try await supervisor.stop(step.name) } catch { logger.error("restore \(restoreID): \(error)") }
            }
            logger.error("restore \(restoreID): failed: \(failure); the restored services are stopped")
        }
        await supervisor.close()
        let final = await finish(failure: failure)
        Self.journal(store, logger, final)
        return final
    }

    /// Brings one service back; returns how to follow its long-term part, if it has one.
    private func bringUp(_ step: Step, backupID: String, restoreID: String, supervisor: SupervisorLink, keepDatabases: Bool) async throws -> LongTerm? {
        switch step.role {
        case .start, .startWithoutDependencies:
            if SupervisorLink.isDown(try await supervisor.status(step.name).state) {
                let now: Bool = if case .startWithoutDependencies = step.role { true } else { false }
                try await supervisor.start(step.name, hold: nil, launch: step.launch, withoutDependencies: now)
            }
            try await supervisor.waitUntilRunning(step.name, timeout: Self.startTimeout)
            return nil
        case .recoverCluster(let target):
            do {
                try await recoverCluster(step, target: target, backupID: backupID, restoreID: restoreID, supervisor: supervisor)
            } catch {
                let message = "\(step.name): \(error)"
                fail(restoreID, step.name, longTerm: false, message)
                fail(restoreID, step.name, longTerm: true, message)
                throw ParticipantError(message)
            }
            return nil
        case .restoreHeld(let t), .restoreStopped(let t):
            do {
                try await stopIfRunning(t.name, supervisor: supervisor)
                if case .restoreHeld = step.role, let socket = t.socketPath {
                    return try await restoreHeld(t, socket: socket, launch: step.launch, backupID: backupID, restoreID: restoreID, supervisor: supervisor,
                                                 keepDatabases: keepDatabases)
                }
                return try await restoreStopped(t, launch: step.launch, backupID: backupID, restoreID: restoreID, supervisor: supervisor,
                                                keepDatabases: keepDatabases)
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
    }

    /// How long a service may take to come up.
    static let startTimeout: Duration = .seconds(300)

    /// The manifest a service is started with instead of the supervisor's, and how errors name it.
    struct Launch: Sendable {
        var manifest: String
        var path: String
    }

    /// A service whose data is about to be replaced must be down: it is stopped (and must stop) when
    /// it runs (a restore asked of a running stack).
    func stopIfRunning(_ name: String, supervisor: SupervisorLink) async throws {
        let state = try await supervisor.status(name).state
        guard !SupervisorLink.isDown(state) else { return }
        logger.notice("\(name) is \(state): stopping it before its data is replaced")
        try await supervisor.stop(name)
    }

    /// A contract service: started held down, checked to be held, restored over its contract; its hold
    /// is released once the short-term part is done.
    private func restoreHeld(_ t: Target, socket: String, launch: Launch?, backupID: String, restoreID: String, supervisor: SupervisorLink,
                             keepDatabases: Bool) async throws -> LongTerm {
        update(restoreID, t.name, short: { $0.progress.phase = "starting" }, long: nil)
        try await supervisor.start(t.name, hold: RestoreHold(restoreID: restoreID, backupID: backupID), launch: launch)
        try await supervisor.waitUntilRunning(t.name, timeout: Self.startTimeout)
        let client: RPCClient
        do { client = try await RPCClient.connect(socketPath: socket) } catch {
            throw ParticipantError("unreachable at \(socket): \(error)")
        }
        do {
            var statusRequest = Automate_Backup_V1_RestoreStatusRequest()
            statusRequest.restoreID = restoreID
            let held: ServiceRestoreStatus
            do {
                held = try await client.call(BackupService.restoreStatusShortTerm, statusRequest, timeout: .seconds(30))
            } catch {
                throw ParticipantError("cannot be held down: started for restore \(restoreID), it answered \(error) instead of its held status (it must honour \(RestoreHold.restoreIDVariable)); its data was not touched")
            }
            guard held.state == .running, held.progress.phase == RestoreHold.heldPhase else {
                throw ParticipantError("cannot be held down: started for restore \(restoreID), it answered \(held.state) in phase \"\(held.progress.phase)\" instead of \"\(RestoreHold.heldPhase)\"; its data was not touched")
            }
            var request = Automate_Backup_V1_RestoreRequest()
            request.backupID = backupID
            request.restoreID = restoreID
            request.keepDatabases = keepDatabases
            _ = try await client.call(BackupService.restore, request, timeout: .seconds(60))
            try await follow(client, BackupService.watchRestoreShortTerm, statusRequest, service: t.name, restoreID: restoreID, longTerm: false)
            try await supervisor.releaseHold(t.name)
        } catch {
            await client.close()
            throw error
        }
        return { [self] in
            defer { Task { await client.close() } }
            var statusRequest = Automate_Backup_V1_RestoreStatusRequest()
            statusRequest.restoreID = restoreID
            do {
                try await follow(client, BackupService.watchRestoreLongTerm, statusRequest, service: t.name, restoreID: restoreID, longTerm: true)
            } catch {
                await fail(restoreID, t.name, longTerm: true, "\(t.name): \(error)")
                throw ParticipantError("\(t.name): \(error)")
            }
        }
    }

    /// Follows one part of a contract service's restore over its watch stream until that part ends.
    private func follow(
        _ client: RPCClient, _ method: RPCServerStreamMethod<Automate_Backup_V1_RestoreStatusRequest, ServiceRestoreStatus>,
        _ request: Automate_Backup_V1_RestoreStatusRequest, service: String, restoreID: String, longTerm: Bool
    ) async throws {
        var last: ServiceRestoreStatus?
        do {
            for try await s in client.stream(method, request) {
                last = s
                let replace: @Sendable (inout ServiceRestoreStatus) -> Void = { $0 = s }
                update(restoreID, service, short: longTerm ? nil : replace, long: longTerm ? replace : nil)
            }
        } catch {
            throw ParticipantError("stopped answering during restore \(restoreID) (did it exit?): \(error)")
        }
        guard let last else { throw ParticipantError("ended its status stream for restore \(restoreID) without a status") }
        if last.state == .failed || last.state == .cancelled { throw ParticipantError(last.error.isEmpty ? "restore \(last.state)" : last.error) }
        guard last.state == .completed else { throw ParticipantError("ended its status stream for restore \(restoreID) while still \(last.state)") }
    }

    /// A service without the contract: restored in process through the sidecars while it is down, then
    /// started.
    private func restoreStopped(_ t: Target, launch: Launch?, backupID: String, restoreID: String, supervisor: SupervisorLink,
                                keepDatabases: Bool) async throws -> LongTerm {
        let kit = kits.kit(for: t.name, owned: t.owned, config: config.kit, logger: logger)
        _ = try await kit.restore(backupID: backupID, restoreID: restoreID, keepDatabases: keepDatabases)
        var short = try await kit.restoreStatus(restoreID, longTerm: false)
        for await s in try await kit.watchRestore(restoreID, longTerm: false) {
            short = s
            update(restoreID, t.name, short: { $0 = s }, long: nil)
        }
        guard short.state == .completed else { throw ParticipantError(short.error.isEmpty ? "restore \(short.state)" : short.error) }
        try await supervisor.start(t.name, hold: nil, launch: launch)
        try await supervisor.waitUntilRunning(t.name, timeout: Self.startTimeout)
        return { [self] in
            var long = try await kit.restoreStatus(restoreID, longTerm: true)
            for await s in try await kit.watchRestore(restoreID, longTerm: true) {
                long = s
                await update(restoreID, t.name, short: nil, long: { $0 = s })
            }
            guard long.state == .completed else {
                let message = "\(t.name): \(long.error.isEmpty ? "restore \(long.state)" : long.error)"
                await fail(restoreID, t.name, longTerm: true, message)
                throw ParticipantError(message)
            }
        }
    }

    /// Marks one part of a service's restore failed (when it still runs).
    func fail(_ restoreID: String, _ service: String, longTerm: Bool, _ message: String) {
        let mark: @Sendable (inout ServiceRestoreStatus) -> Void = { s in
            if s.state == .running { s.state = .failed; s.error = message; s.finishedAtUnixMs = unixMillis() }
        }
        update(restoreID, service, short: longTerm ? nil : mark, long: longTerm ? mark : nil)
    }

    // MARK: status

    func update(_ id: String, _ service: String, short: (@Sendable (inout ServiceRestoreStatus) -> Void)?,
                        long: (@Sendable (inout ServiceRestoreStatus) -> Void)?) {
        guard let context, running == id else { return }
        let (store, logger) = (self.store, self.logger)
        context.report { s in Self.apply(&s, service, short: short, long: long, store: store, logger: logger) }
    }

    /// One service's change, as the registry applies it; the journal follows every change of state.
    private static func apply(_ s: inout StackRestore, _ service: String, short: (@Sendable (inout ServiceRestoreStatus) -> Void)?,
                              long: (@Sendable (inout ServiceRestoreStatus) -> Void)?, store: DeploymentStore, logger: Logger) {
        let before = s.shortTerm.map(\.state) + s.longTerm.map(\.state) + [s.shortTermState]
        // A service reports a part done while its operation still runs (the short-term part ends when
        // its data is in): the end is stamped here, when it is first seen, so every part has one.
        let now = unixMillis()
        if let short, let i = s.shortTerm.firstIndex(where: { $0.service == service }) {
            let ended = s.shortTerm[i].finishedAtUnixMs
            short(&s.shortTerm[i])
            s.shortTerm[i].service = service
            if s.shortTerm[i].state != .running && s.shortTerm[i].finishedAtUnixMs == 0 { s.shortTerm[i].finishedAtUnixMs = ended > 0 ? ended : now }
        }
        if let long, let i = s.longTerm.firstIndex(where: { $0.service == service }) {
            let ended = s.longTerm[i].finishedAtUnixMs
            long(&s.longTerm[i])
            s.longTerm[i].service = service
            if s.longTerm[i].state != .running && s.longTerm[i].finishedAtUnixMs == 0 { s.longTerm[i].finishedAtUnixMs = ended > 0 ? ended : now }
        }
        // The journal follows every change of state (not every byte of progress).
        if s.shortTerm.map(\.state) + s.longTerm.map(\.state) + [s.shortTermState] != before { journal(store, logger, s) }
    }

    /// A change to the running restore's whole status (journaled).
    func report(_ id: String, _ change: @escaping @Sendable (inout StackRestore) -> Void) {
        guard let context, running == id else { return }
        let (store, logger) = (self.store, self.logger)
        context.report { s in
            change(&s)
            Self.journal(store, logger, s)
        }
    }

    /// Every service is back up (the short-term part of each restored one is done, the others run).
    private func shortTermDone(_ id: String) {
        guard let context, running == id else { return }
        let (store, logger) = (self.store, self.logger)
        context.report { s in
            guard s.shortTermState == .running else { return }
            s.shortTermState = .completed
            Self.journal(store, logger, s)
        }
    }

    /// The restore's end (after every change reported before it); returns its final status.
    private func finish(failure: String?) async -> StackRestore {
        guard let context else { preconditionFailure("finish() outside a restore") }
        let final = await context.updated { s in Self.end(&s, failure: failure) }
        running = nil
        self.context = nil
        return final
    }

    private static func end(_ s: inout StackRestore, failure: String?) {
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
    }

    static func name(_ state: BackupOperationState) -> String { BackupOrchestrator.name(state) }
}
