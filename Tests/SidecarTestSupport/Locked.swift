import Synchronization

/// A value behind a `Mutex` that escaping `@Sendable` closures can share (a `Mutex` itself cannot be
/// captured by one): what a test reads back from a callback that runs on another thread.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) {
        mutex = Mutex(value)
    }

    public func withLock<Result: Sendable>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try mutex.withLock { try body(&$0) }
    }

    public var value: Value { mutex.withLock { $0 } }
}
