import AutomateRPC
import AutomateSupervisor
import BackupContract
import Foundation
import S3Client
import ServiceKit
import SidecarProto

/// Point-in-time recovery, the cluster server's part of a restore. The pg-sidecar starts first (not
/// waiting for the server it serves); the server starts held for the restore with the recovery target in
/// its environment, and its init hook rebuilds the data folder from the backup's base backup and sets
/// PostgreSQL to replay archived WAL (fetched through the pg-sidecar) up to the target and promote. Once
/// it has promoted, the rest of the stack comes back as in any restore, keeping the databases as the
/// recovery left them.
extension RestoreOrchestrator {
    /// How long a recovery may replay WAL before the restore gives up on it.
    static let recoveryTimeout: Duration = .seconds(24 * 3600)

    /// Checks a point-in-time request against the stack and the backup before anything changes: a known
    /// target, a cluster server among the manifests, a base backup of it in `backupID` from the cluster
    /// the request names. Returns the recovery with the cluster filled in.
    func checkedRecovery(_ requested: PointInTimeTarget, stack: StackServices, backupID: String, pgSidecar: String) async throws -> Recovery {
        var target = requested
        switch target.kind {
        case "time", "lsn":
            guard !target.value.isEmpty else { throw RPCError(.invalidArgument, "point_in_time.value is empty: a \(target.kind) target needs one") }
        case "backup_end":
            target.value = ""
        default:
            throw RPCError(.invalidArgument, "point_in_time.kind \"\(target.kind)\" is not time, lsn or backup_end")
        }
        guard let server = stack.services.first(where: { $0.manifest.backup.cluster && $0.manifest.kind != .orchestrator }) else {
            throw RPCError(.failedPrecondition, "no manifest in \(config.servicesDirectory) has [backup] cluster = true: this stack has no database server to recover")
        }
        guard stack.services.contains(where: { $0.manifest.name == pgSidecar }) else {
            throw RPCError(.failedPrecondition, "this stack has no \(pgSidecar): nothing can read the base backup and WAL for the recovery")
        }
        let key = "\(backupID)/\(server.manifest.name)/pg_base/metadata.json"
        let metadata: PGBaseBackupMetadata
        do {
            let bytes = try await config.kit.s3.getObject(bucket: config.kit.bucket, key: key)
            metadata = try JSONDecoder().decode(PGBaseBackupMetadata.self, from: Data(bytes))
        } catch let e as S3Error where e.isNotFound {
            throw RPCError(.failedPrecondition, "backup \(backupID) has no base backup of \(server.manifest.name) (\(key)): it was taken with archiving off; nothing was changed")
        } catch {
            throw RPCError(.failedPrecondition, "cannot read \(key): \(error); nothing was changed")
        }
        if target.cluster.isEmpty { target.cluster = metadata.cluster }
        guard target.cluster == metadata.cluster else {
            throw RPCError(.failedPrecondition, "backup \(backupID)'s base backup is of cluster \(metadata.cluster), not \(target.cluster); nothing was changed")
        }
        return Recovery(service: server.manifest.name, target: target, pgSidecar: pgSidecar)
    }

    /// Rebuilds the cluster server from the base backup and waits until it has replayed WAL to the target
    /// and promoted; records the point it reached in the restore's status.
    func recoverCluster(_ step: Step, target: PointInTimeTarget, backupID: String, restoreID: String, supervisor: SupervisorLink) async throws {
        let name = step.name
        update(restoreID, name, short: { $0.progress.phase = "extracting the base backup" }, long: nil)
        try await stopIfRunning(name, supervisor: supervisor)
        let spec = target.kind == "backup_end" ? "backup_end" : "\(target.kind):\(target.value)"
        let hold = RestoreHold(restoreID: restoreID, backupID: backupID, recoveryTarget: spec, recoveryCluster: target.cluster)
        try await supervisor.start(name, hold: hold, launch: step.launch)
        do {
            try await supervisor.waitUntilRunning(name, timeout: Self.startTimeout)
        } catch {
            throw ParticipantError("\(error); `automate logs \(name)` shows why (its init hook extracts the base backup, then PostgreSQL replays WAL)")
        }
        let reached = try await waitForPromotion(name, restoreID: restoreID, supervisor: supervisor)
        try await supervisor.releaseHold(name)
        logger.info("restore \(restoreID): \(name) recovered to \(reached.replayLsn) (last transaction \(reached.lastTransactionAt.isEmpty ? "none" : reached.lastTransactionAt)), promoted on timeline \(reached.timeline)")
        let done: @Sendable (inout ServiceRestoreStatus) -> Void = { s in
            s.state = .completed
            s.progress.phase = "done"
            s.finishedAtUnixMs = unixMillis()
        }
        update(restoreID, name, short: done, long: done)
        report(restoreID) { s in
            s.recovery.reachedLsn = reached.replayLsn
            s.recovery.lastTransactionAt = reached.lastTransactionAt
            s.recovery.timeline = reached.timeline
        }
    }

    /// Follows the server's recovery through the pg-sidecar until it has promoted. Fails as soon as the
    /// server stops running (PostgreSQL ends a recovery that cannot reach its target), or at
    /// ``recoveryTimeout``.
    private func waitForPromotion(_ name: String, restoreID: String, supervisor: SupervisorLink) async throws -> Automate_Sidecar_Pg_PGClusterRecovery {
        let socket = config.kit.pgSidecarSocket
        let client: RPCClient
        do { client = try await RPCClient.connect(socketPath: socket) } catch {
            throw ParticipantError("the pg-sidecar is unreachable at \(socket) to follow the recovery: \(error)")
        }
        defer { Task { await client.close() } }
        let deadline = ContinuousClock.now + Self.recoveryTimeout
        let alive: Set<String> = [ServiceState.running.rawValue, ServiceState.unhealthy.rawValue, ServiceState.starting.rawValue]
        var last = "no answer yet"
        while true {
            try Task.checkCancellation()
            let state = try await supervisor.status(name)
            guard alive.contains(state.state) else {
                throw ParticipantError(
                    "stopped during its recovery (\(state.state)\(state.lastExit.isEmpty ? "" : ", \(state.lastExit)")) at \(last): `automate logs \(name)` shows PostgreSQL's reason (a target past the archived WAL ends with \"recovery ended before configured recovery target was reached\")")
            }
            do {
                let r = try await client.call(PGSidecarService.clusterRecovery, Automate_Sidecar_Pg_PGClusterRecoveryRequest(), timeout: .seconds(30))
                if !r.inRecovery { return r }
                last = "replayed to \(r.replayLsn)"
                let phase = "replaying WAL: at \(r.replayLsn)" + (r.lastTransactionAt.isEmpty ? "" : ", last transaction \(r.lastTransactionAt)")
                update(restoreID, name, short: { $0.progress.phase = phase }, long: nil)
            } catch let e as RPCError where e.code == .unavailable || e.code == .failedPrecondition || e.code == .deadlineExceeded {
                last = e.message
            }
            guard ContinuousClock.now < deadline else {
                throw ParticipantError("still recovering after \(Self.recoveryTimeout) (\(last)); it was left running")
            }
            // The server says nothing when it promotes: its state is read again in a quarter second.
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
