import Foundation
import Operations
import SidecarProto

extension ESSidecar {
    /// An operation's snapshot on the wire. Items count documents (export mode) or shards (snapshot
    /// mode); short-term is done once the operation reached `loading` (the indices exist and are usable),
    /// long-term once it completed.
    func wireStatus(_ s: OperationSnapshot<ESOutcome>) -> ESStatus {
        var r = ESStatus()
        r.operationID = s.id
        r.kind = s.kind
        r.mode = config.mode.rawValue
        r.startedAt = rfc3339(s.startedAt)
        r.finishedAt = s.finishedAt.map { rfc3339($0) } ?? ""
        let shards = r.mode == ESMode.snapshot.rawValue
        let outcome = s.result
        r.indices = s.progress.items.map { item in
            var x = ESIndexStatus()
            x.index = item.name
            if shards {
                x.shardsDone = item.itemsDone
                x.shardsTotal = item.itemsTotal
            } else {
                x.docsDone = item.itemsDone
                x.docsTotal = item.itemsTotal
            }
            x.size = item.bytesTotal
            x.error = item.error
            if !item.error.isEmpty {
                x.phase = .failed
            } else if item.phase == .done {
                x.phase = .completed
            } else if item.phase == .pending {
                x.phase = .pending
            } else {
                x.phase = .running
            }
            if let done = outcome?.indices.first(where: { $0.name == item.name }) {
                x.phase = .completed
                if !shards {
                    x.docsDone = done.docs
                    x.docsTotal = done.docs
                    x.size = done.size
                    x.sha256 = done.sha256
                }
            }
            return x
        }
        switch s.state {
        case .running(let p):
            r.phase = p.phase == .pending ? .pending : .running
            r.shortTermDone = p.phase >= .loading
        case .completed:
            r.phase = .completed
            r.shortTermDone = true
            r.longTermDone = true
        case .failed(let e):
            r.phase = .failed
            r.error = "\(e)"
        case .cancelled:
            r.phase = .cancelled
            r.error = "cancelled"
            for i in r.indices.indices where r.indices[i].phase == .running || r.indices[i].phase == .pending {
                r.indices[i].phase = .cancelled
            }
        }
        return r
    }
}
