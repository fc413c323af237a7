import Foundation

/// A value guarded by a lock, for the little state shared across threads (server bookkeeping, the
/// client's call-id counter). Hot per-call state lives on event loops instead.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLockedValue<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
