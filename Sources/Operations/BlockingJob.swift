import Foundation

/// One piece of blocking work running on a ``BlockingPool`` thread, as that work sees it: whether it was
/// cancelled, and the actions to run when it is (kill a tool's process group, abort an upload).
public final class BlockingJob: @unchecked Sendable {  // state behind `lock`
    /// Registered cancel actions, by token.
    private var actions: [UInt64: @Sendable () -> Void] = [:]
    private var nextToken: UInt64 = 0
    private var cancelled = false
    private let lock = NSLock()

    public init() {}

    /// True once the awaiting task was cancelled.
    public var isCancelled: Bool { lock.withLock { cancelled } }

    /// Throws `CancellationError` once the awaiting task was cancelled.
    public func checkCancellation() throws {
        if isCancelled { throw CancellationError() }
    }

    /// Registers `action` to run (once, on the cancelling thread) when the job is cancelled, or at once
    /// when it already was. Returns a token for ``removeCancelAction(_:)``.
    @discardableResult
    public func onCancel(_ action: @escaping @Sendable () -> Void) -> UInt64 {
        let token: UInt64? = lock.withLock {
            if cancelled { return nil }
            nextToken += 1
            actions[nextToken] = action
            return nextToken
        }
        guard let token else {
            action()
            return 0
        }
        return token
    }

    /// Forgets a cancel action (its work is over: a killed tool was reaped, an upload completed).
    public func removeCancelAction(_ token: UInt64) {
        _ = lock.withLock { actions.removeValue(forKey: token) }
    }

    /// Runs `body` with `action` registered as a cancel action for its duration.
    public func withCancelAction<T>(_ action: @escaping @Sendable () -> Void, _ body: () throws -> T) rethrows -> T {
        let token = onCancel(action)
        defer { removeCancelAction(token) }
        return try body()
    }

    /// Marks the job cancelled and runs its cancel actions (each once). Idempotent.
    public func cancel() {
        let pending: [@Sendable () -> Void] = lock.withLock {
            if cancelled { return [] }
            cancelled = true
            defer { actions = [:] }
            return actions.sorted { $0.key < $1.key }.map(\.value)
        }
        for action in pending { action() }
    }
}
