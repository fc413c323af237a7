import BackupContract
import Foundation

/// Progress of an operation made of parts running at once (databases, indices, archives): each part
/// reports its own bytes and items; the board sums them and tells the listener.
final class ProgressBoard: @unchecked Sendable {
    struct Part { var bytesDone: UInt64 = 0; var bytesTotal: UInt64 = 0; var itemsDone: UInt64 = 0; var itemsTotal: UInt64 = 0; var phase = "" }
    private let lock = NSLock()
    private var parts: [String: Part] = [:]
    private let listener: @Sendable (BackupProgress) -> Void

    init(listener: @escaping @Sendable (BackupProgress) -> Void) {
        self.listener = listener
    }

    func update(_ name: String, _ body: (inout Part) -> Void) {
        let progress: BackupProgress = lock.withLock {
            var part = parts[name] ?? Part()
            body(&part)
            parts[name] = part
            var p = BackupProgress()
            for part in parts.values {
                p.bytesDone += part.bytesDone
                p.bytesTotal += part.bytesTotal
                p.itemsDone += part.itemsDone
                p.itemsTotal += part.itemsTotal
            }
            let running = parts.values.map(\.phase).filter { $0 != "done" && !$0.isEmpty }
            p.phase = running.first ?? "done"
            return p
        }
        listener(progress)
    }
}
