import AutomateRPC
import AutomateSupervisor
import Foundation
import SidecarProto

/// The stack's WAL archiver as `automate backup status` and `automate status` show it: the pg-sidecar's
/// WALArchiveStatus (PostgreSQL's pg_stat_archiver and the sidecar's last upload error).
enum WALArchiverStatus {
    /// The archiver's state, or nil when the stack runs no pg-sidecar (or it does not answer: `reason`).
    static func fetch(home: AutomateHome) async -> (status: Automate_Sidecar_Pg_PGWALArchiveStatus?, reason: String) {
        let path = home.runDirectory + "/pg-sidecar-service.sock"
        guard FileManager.default.fileExists(atPath: path) else { return (nil, "pg-sidecar-service is not running") }
        do {
            let client = try await RPCClient.connect(socketPath: path)
            defer { Task { await client.close() } }
            return (try await client.call(PGSidecarService.walArchiveStatus, .init(), timeout: .seconds(10)), "")
        } catch {
            return (nil, "pg-sidecar-service does not answer: \(error)")
        }
    }

    /// One line: the last file archived and how long ago, failures and the last error. `healthy` is false
    /// when the last attempt failed (the archive is behind).
    static func line(_ s: Automate_Sidecar_Pg_PGWALArchiveStatus, now: Date) -> (text: String, healthy: Bool) {
        guard s.enabled else { return ("WAL archive: off (archive_mode); no point-in-time recovery", true) }
        func ago(_ ms: Int64) -> String { StatusRendering.formatDuration(now.timeIntervalSince1970 - Double(ms) / 1000) + " ago" }
        var text = "WAL archive: "
        text += s.lastArchivedWal.isEmpty ? "nothing archived yet" : "last \(s.lastArchivedWal) \(ago(s.lastArchivedUnixMs))"
        text += ", \(s.archivedCount) archived, archive_timeout \(s.archiveTimeout), cluster \(s.cluster)"
        let failing = s.lastFailedUnixMs > s.lastArchivedUnixMs
        if s.failedCount > 0 {
            text += "; \(s.failedCount) failed, last \(s.lastFailedWal) \(ago(s.lastFailedUnixMs))"
            if failing { text += " (FAILING: PostgreSQL keeps the WAL and retries)" }
        }
        if s.skippedBeforeFirstBackup > 0 { text += "; \(s.skippedBeforeFirstBackup) finished before the repository's first backup (not stored: no recovery needs them)" }
        if failing && !s.lastError.isEmpty { text += "\n  last error: \(s.lastError)" }
        return (text, !failing)
    }
}
