import Foundation
import Operations
import SidecarProto

extension PGSidecar {
    /// An operation's snapshot on the wire: phases, bytes, per database its step, tool pid and (once
    /// completed) key, sha256, size and row counts.
    static func status(_ s: OperationSnapshot<PGOutcome>) -> PGStatus {
        var r = PGStatus()
        r.operationID = s.id
        r.kind = s.kind
        r.backupID = s.labels["backup_id"] ?? ""
        r.service = s.labels["service"] ?? ""
        r.startedAt = rfc3339(s.startedAt)
        r.finishedAt = s.finishedAt.map { rfc3339($0) } ?? ""
        r.serverVersion = s.progress.details["server_version"] ?? ""
        r.bytesDone = s.progress.bytesDone
        r.bytesTotal = s.progress.bytesTotal
        let outcome = s.result
        r.databases = s.progress.items.map { item in
            var d = PGDatabaseStatus()
            d.database = item.name
            d.step = item.step
            d.bytesDone = item.bytesDone
            d.bytesTotal = item.bytesTotal
            d.key = item.location
            d.toolPid = item.pid
            d.error = item.error
            d.size = Int64(item.details["size"] ?? "") ?? 0
            if !item.error.isEmpty {
                d.phase = .failed
            } else if item.phase == .done {
                d.phase = .completed
            } else if item.phase == .pending {
                d.phase = .pending
            } else {
                d.phase = .running
            }
            if let done = outcome?.databases.first(where: { $0.name == item.name }) {
                d.key = done.key
                d.sha256 = done.sha256
                d.size = done.size
                d.tables = done.tables.map { t in
                    var x = Automate_Sidecar_Pg_PGTableCount(); x.schema = t.schema; x.table = t.table; x.rows = t.rows; return x
                }
            }
            return d
        }
        switch s.state {
        case .running(let p):
            r.phase = p.phase == .pending ? .pending : .running
        case .completed(let o):
            r.phase = .completed
            if r.serverVersion.isEmpty { r.serverVersion = o.serverVersion }
        case .failed(let e):
            r.phase = .failed
            r.error = "\(e)"
        case .cancelled:
            r.phase = .cancelled
            r.error = "cancelled"
            for i in r.databases.indices where r.databases[i].phase == .running || r.databases[i].phase == .pending {
                r.databases[i].phase = .cancelled
                r.databases[i].toolPid = 0
            }
        }
        if s.isTerminal { for i in r.databases.indices { r.databases[i].toolPid = 0 } }
        return r
    }
}
