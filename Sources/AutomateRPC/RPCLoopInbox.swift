import Foundation
import NIOCore

/// Hands work from any thread to an event loop in batches: the first item submitted while the loop
/// has none pending schedules one drain; items submitted before it runs ride along. This replaces an
/// `execute` (a closure allocation and often a wake-up of the loop) per call with a short lock.
final class RPCLoopInbox<Item>: @unchecked Sendable {
    let eventLoop: any EventLoop
    private let lock = NSLock()
    private var items: [Item] = []
    private var drainScheduled = false
    /// Runs on the loop with each drained batch.
    private let handle: (inout [Item]) -> Void

    init(eventLoop: any EventLoop, handle: @escaping (inout [Item]) -> Void) {
        self.eventLoop = eventLoop
        self.handle = handle
    }

    func submit(_ item: Item) {
        lock.lock()
        items.append(item)
        let schedule = !drainScheduled
        drainScheduled = true
        lock.unlock()
        if schedule {
            eventLoop.execute { self.drain() }
        }
    }

    private func drain() {
        var batch: [Item] = []
        lock.lock()
        swap(&batch, &items)
        drainScheduled = false
        lock.unlock()
        handle(&batch)
    }
}
