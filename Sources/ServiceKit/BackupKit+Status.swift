import BackupContract
import BackupRepository
import Foundation
import Operations

extension BackupProgress {
    /// The contract's progress from the kit's: the word is the step of the first part still at work
    /// (`done` once everything is), bytes and items summed over the parts.
    init(_ p: OperationProgress) {
        self.init()
        let working = p.items.first { $0.phase != .done && $0.phase != .pending && !$0.step.isEmpty }
        phase = p.phase == .done ? "done" : (working?.step ?? (p.step.isEmpty ? p.phase.description : p.step))
        bytesDone = UInt64(max(0, p.bytesDone))
        bytesTotal = UInt64(max(0, p.bytesTotal))
        itemsDone = UInt64(max(0, p.itemsDone))
        itemsTotal = UInt64(max(0, p.itemsTotal))
        newBytes = p.items.reduce(0) { $0 + (UInt64($1.details["new_bytes"] ?? "") ?? 0) }
        reusedBytes = p.items.reduce(0) { $0 + (UInt64($1.details["reused_bytes"] ?? "") ?? 0) }
    }

    /// New and reused bytes of a finished backup, from its records: a chunked artifact's own counts, a
    /// plain one's every byte new.
    public mutating func count(_ artifacts: [ArtifactRecord]) {
        newBytes = artifacts.reduce(0) { $0 + ($1.chunks.map { UInt64(max(0, $0.newBytes)) } ?? $1.size) }
        reusedBytes = artifacts.reduce(0) { $0 + ($1.chunks.map { UInt64(max(0, $0.reusedBytes)) } ?? 0) }
    }
}

extension BackupKit {
    /// A backup operation on the contract's wire.
    static func backupStatus(_ s: OperationSnapshot<ServiceMetadata>, service: String) -> ServiceBackupStatus {
        var r = ServiceBackupStatus()
        r.backupID = s.id
        r.service = service
        r.startedAtUnixMs = unixMillis(s.startedAt)
        r.finishedAtUnixMs = s.finishedAt.map { unixMillis($0) } ?? 0
        r.progress = BackupProgress(s.progress)
        switch s.state {
        case .running:
            r.state = .running
        case .completed(let metadata):
            r.state = .completed
            r.progress.phase = "done"
            r.progress.count(metadata.artifacts)
            r.artifacts = metadata.artifacts.map { a in
                var x = BackupArtifact()
                x.key = (("\(s.id)/\(service)/" + a.path) as NSString).standardizingPath
                x.size = a.size; x.sha256 = a.sha256; x.format = a.format; x.itemCount = a.items ?? 0
                return x
            }
        case .failed(let e):
            r.state = .failed
            r.error = "\(e)"
        case .cancelled:
            r.state = .cancelled
            r.error = "cancelled"
        }
        return r
    }

    /// One part of a restore operation on the contract's wire: short-term is every item but
    /// ``ServiceRestore/longTermItem`` and is done once the operation reached `loading`; long-term is that
    /// item and is done when the operation completed.
    static func restoreStatus(_ s: OperationSnapshot<Void>, service: String, longTerm: Bool) -> ServiceRestoreStatus {
        var r = ServiceRestoreStatus()
        r.backupID = s.labels["backup_id"] ?? ""
        r.restoreID = s.id
        r.service = service
        r.startedAtUnixMs = unixMillis(s.startedAt)
        var part = s.progress
        part.items = s.progress.items.filter { ($0.name == ServiceRestore.longTermItem) == longTerm }
        part.recomputeTotals()
        if part.items.isEmpty { part.bytesDone = 0; part.bytesTotal = 0; part.itemsDone = 0; part.itemsTotal = 0 }
        let shortDone = s.progress.phase >= .loading
        switch s.state {
        case .running:
            let done = !longTerm && shortDone
            r.state = done ? .completed : .running
            part.phase = done ? .done : part.phase
            r.progress = BackupProgress(part)
            if longTerm && part.items.isEmpty { r.progress.phase = "waiting" }
        case .completed:
            r.state = .completed
            part.phase = .done
            r.progress = BackupProgress(part)
            r.finishedAtUnixMs = s.finishedAt.map { unixMillis($0) } ?? 0
        case .failed(let e):
            r.state = !longTerm && shortDone ? .completed : .failed
            r.error = r.state == .failed ? "\(e)" : ""
            r.progress = BackupProgress(part)
            r.finishedAtUnixMs = s.finishedAt.map { unixMillis($0) } ?? 0
        case .cancelled:
            r.state = !longTerm && shortDone ? .completed : .cancelled
            r.error = r.state == .cancelled ? "cancelled" : ""
            r.progress = BackupProgress(part)
            r.finishedAtUnixMs = s.finishedAt.map { unixMillis($0) } ?? 0
        }
        return r
    }
}
