import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The thread-local slot that holds the job a thread runs (see ``BlockingJob/current``).
private let currentJobKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
    return key
}()

/// One piece of blocking work running on a ``BlockingPool`` thread, as that work sees it: whether it was
/// cancelled, and the actions to run when it is (kill a tool's process group, abort an upload).
public final class BlockingJob: @unchecked Sendable {  // state behind `lock`
    /// Registered cancel actions, by token.
    private var actions: [UInt64: @Sendable () -> Void] = [:]
    private var nextToken: UInt64 = 0
    private var cancelled = false
    private let lock = NSLock()

    public init() {}

    /// The job the calling thread works for: set while a ``BlockingPool`` thread runs it, and on a helper
    /// thread that does part of its work (``withCurrent(_:_:)``). Blocking code deep down (a libcurl
    /// transfer) checks it to stop when the job is cancelled, without a parameter threaded through.
    public static var current: BlockingJob? {
        pthread_getspecific(currentJobKey).map { Unmanaged<BlockingJob>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Runs `body` outside any job: cleanup after a cancellation (aborting an upload, deleting what a
    /// cancelled job wrote) that must not itself be stopped by that cancellation.
    public static func shielded<T>(_ body: () throws -> T) rethrows -> T {
        try withCurrent(nil, body)
    }

    /// Runs `body` with `job` as the calling thread's ``current`` job (the caller keeps `job` alive).
    public static func withCurrent<T>(_ job: BlockingJob?, _ body: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(currentJobKey)
        pthread_setspecific(currentJobKey, job.map { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) })
        defer { pthread_setspecific(currentJobKey, previous) }
        return try body()
    }

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
