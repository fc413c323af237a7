import BackupContract
import BackupRepository
import Foundation
import Logging
import Operations
import S3Client
import ServiceKit

/// Finishes, at start-up, what a stop of the deployment-service (kill -9, a crash, the supervisor's
/// death) left half done, so that the store and the repository agree:
///
/// - in the store, at once: every backup still `in_progress` is failed with the reason (its services
///   still running too) and flagged until the repository says so as well; every running restore is failed;
/// - in the repository, in the background (start-up is not blocked), retried with backoff until the
///   gateway answers, after one listing of the repository: each flagged backup gets `backup-result.json`
///   (when missing) and `.status` = `failed`; one whose `.status` already says `completed` had finished
///   and is recorded so;
/// - then every `<id>/.status` = `in_progress` of an id the store has never recorded (the store was
///   restored from an older copy, or lost) is failed the same way and recorded.
///
/// Only ids the store does not know are read beyond the flagged ones: a backup records its id in the
/// store before it writes anything to the repository, so a backup started after this restart is never
/// mistaken for a stray, and backup ids are never reused.
public struct StartupReconciler: Sendable {
    let config: DeploymentConfig
    let store: DeploymentStore
    let logger: Logger
    /// Why the interrupted operations failed.
    public let reason: String

    public init(config: DeploymentConfig, store: DeploymentStore, logger: Logger, restartedAt: Date = Date()) {
        self.config = config
        self.store = store
        self.logger = logger
        reason = "the deployment-service stopped while it ran (restarted at \(ISO8601DateFormatter().string(from: restartedAt)))"
    }

    /// The store part: interrupted backups and restores recorded failed. Returns the backups' ids.
    public func failInterrupted(restores: RestoreOrchestrator) async throws -> [String] {
        let backups = try store.failInterrupted(reason: reason)
        for b in backups {
            try store.settleResult(id: b.id, result: try resultText(b))
        }
        if !backups.isEmpty {
            logger.warning("backups \(backups.map(\.id).joined(separator: ", ")) were running when the deployment-service stopped: recorded as failed")
        }
        let failed = try await restores.failInterrupted(reason: reason)
        if !failed.isEmpty {
            logger.warning("restores \(failed.joined(separator: ", ")) were running when the deployment-service stopped: recorded as failed")
        }
        return backups.map(\.id)
    }

    /// The repository part, in a task of its own.
    public func settleRepository() -> Task<Void, Never> {
        Task {
            do {
                try await waitForOwnRepository()
                let s3 = config.kit.s3, bucket = config.kit.bucket
                let keys = try await retrying("listing the repository") { Set(try await s3.listObjects(bucket: bucket).map(\.key)) }
                for b in try store.backupsPendingInRepository() { try await settle(b, keys: keys) }
                try await failStrays(keys: keys)
            } catch {
                // Only cancellation ends the retries early.
                logger.notice("reconciling the repository stopped: \(error)")
            }
        }
    }

    // MARK: steps

    /// Waits until the gateway serves the stack's own repository (not one lent to a restore) and answers.
    private func waitForOwnRepository() async throws {
        let marker = BorrowedRepository.markerPath(home: config.environment["AUTOMATE_HOME"] ?? "")
        let s3 = config.kit.s3, bucket = config.kit.bucket
        var delay = Duration.milliseconds(100)
        var said = false
        while true {
            try Task.checkCancellation()
            if FileManager.default.fileExists(atPath: marker) {
                if !said { logger.notice("the gateway serves a repository lent to a restore (\(marker)); the repository is reconciled once it serves its own") }
                said = true
            } else {
                do {
                    _ = try await runBlocking(observingCancellation: false) { _ in try s3.headObjectSync(bucket: bucket, key: ".automate-probe") }
                    return
                } catch let e as S3Error where e.status < 500 {
                    return  // it answers (a refusal of the probe key is an answer)
                } catch {
                    if !said { logger.notice("waiting for the backup-gateway at \(s3.endpoint) to reconcile the repository: \(error)") }
                    said = true
                }
            }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }

    /// One backup the store failed (flagged): the repository made to say so (or, when its `.status` says
    /// completed, the store corrected: it finished before the stop). Its failed result is the one the
    /// store recorded (`failInterrupted`, the orchestrator); a backup failed by a store replacement has
    /// none yet and gets it from the journal.
    private func settle(_ b: DeploymentStore.Backup, keys: Set<String>) async throws {
        let id = b.id
        if try await state(of: id) == .completed {
            let sums = try await retrying("reading \(id)/checksums.json") { try await self.read("\(id)/checksums.json") }
            let written = try await retrying("reading \(id)/backup-result.json") { try await self.read("\(id)/backup-result.json") }
            try store.settleInRepository(id: id, state: "completed", error: "", fingerprint: sums.map { Checksum.sha256($0) } ?? "",
                                         result: written.map { String(decoding: $0, as: UTF8.self) } ?? b.result)
            logger.notice("backup \(id): its .status says completed (it finished before the stop); recorded completed")
            return
        }
        let result = b.result == "{}" ? try resultText(b) : b.result
        // A backup that never wrote anything to this repository (it is another one's, lent to a restore
        // when the store was made) gets nothing written.
        if keys.contains(where: { $0.hasPrefix(id + "/") }) {
            try await markFailed(id, result: Array(result.utf8), hasResult: keys.contains("\(id)/backup-result.json"))
        }
        try store.settleInRepository(id: id, state: "failed", error: b.error, fingerprint: "", result: result)
        logger.notice("backup \(id): marked failed in the repository (\(b.error))")
    }

    /// Every `<id>/.status` = in_progress of an id the store never recorded: failed with the reason.
    private func failStrays(keys: Set<String>) async throws {
        let ids = keys.compactMap { key -> String? in
            let parts = key.split(separator: "/")
            guard parts.count == 2, parts[1] == ".status", BackupID(String(parts[0])) != nil else { return nil }
            return String(parts[0])
        }.sorted()
        for id in ids where try !store.backupIDUsed(id) {
            guard try await state(of: id) == .inProgress else { continue }
            let record = DeploymentStore.Backup(
                id: id, state: "failed", startedAt: Int64((BackupID(id)?.date.timeIntervalSince1970 ?? 0) * 1000), finishedAt: nil,
                error: reason, bytes: 0, fingerprint: "", result: "{}")
            let result = try resultText(record)
            try await markFailed(id, result: Array(result.utf8), hasResult: keys.contains("\(id)/backup-result.json"))
            try store.insertFailedBackup(id: id, startedAt: record.startedAt, reason: reason, result: result)
            logger.notice("backup \(id): found in_progress in the repository, never recorded here: marked failed")
        }
    }

    /// `backup-result.json` (when missing), then `.status` = failed.
    private func markFailed(_ id: String, result: [UInt8], hasResult: Bool) async throws {
        let s3 = config.kit.s3, bucket = config.kit.bucket
        if !hasResult {
            try await retrying("writing \(id)/backup-result.json") {
                try await s3.putObject(bucket: bucket, key: "\(id)/backup-result.json", bytes: result, contentType: "application/json")
            }
        }
        try await retrying("writing \(id)/.status") {
            try await s3.putObject(bucket: bucket, key: "\(id)/.status", bytes: Array("failed\n".utf8), contentType: "text/plain")
        }
    }

    // MARK: helpers

    /// backup-result.json for a failed backup, from the journal.
    private func resultText(_ b: DeploymentStore.Backup) throws -> String {
        var s = BackupOrchestrator.fromRecord(b)
        s.state = .failed
        s.error = b.error
        s.services = try store.serviceOutcomes(backupID: b.id).map { o in
            var x = ServiceBackupStatus()
            x.backupID = b.id
            x.service = o.service
            x.state = BackupOrchestrator.state(o.state)
            x.error = o.error
            x.startedAtUnixMs = o.startedAt
            x.finishedAtUnixMs = o.finishedAt ?? 0
            x.progress.bytesDone = UInt64(max(0, o.bytes))
            return x
        }
        if s.finishedAtUnixMs == 0 { s.finishedAtUnixMs = unixMillis() }
        return String(decoding: BackupOrchestrator.result(s, state: "failed", error: b.error), as: UTF8.self)
    }

    /// What `<id>/.status` says; nil when there is none.
    private func state(of id: String) async throws -> BackupRepository.State? {
        guard let bytes = try await retrying("reading \(id)/.status", { try await self.read("\(id)/.status") }) else { return nil }
        return BackupRepository.State(rawValue: String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? .unknown
    }

    /// An object's bytes, nil when it does not exist.
    private func read(_ key: String) async throws -> [UInt8]? {
        do { return try await config.kit.s3.getObject(bucket: config.kit.bucket, key: key) } catch let e as S3Error where e.isNotFound {
            return nil
        }
    }

    /// Runs `body` until it succeeds, waiting 100 ms doubling to 5 s between tries (the gateway may be
    /// restarting); only cancellation stops it.
    private func retrying<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        var delay = Duration.milliseconds(100)
        while true {
            try Task.checkCancellation()
            do { return try await body() } catch {
                if error is CancellationError { throw error }
                logger.warning("\(what) failed (\(error)); retrying in \(delay)")
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}
