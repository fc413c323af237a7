import Foundation

/// Live updates of operations keyed by id (a backup, a restore) to any number of watchers: each watcher
/// gets the current value first, then every published one, and its stream ends with the operation.
public final class StatusBroadcaster<Value: Sendable>: @unchecked Sendable {  // state behind `lock`
    private let lock = NSLock()
    private var continuations: [String: [UUID: AsyncStream<Value>.Continuation]] = [:]

    public init() {}

    /// A stream of `key`'s updates starting with `current`; it ends at once when `ended`, else with the
    /// first published value that is ended.
    public func stream(_ key: String, current: Value, ended: Bool) -> AsyncStream<Value> {
        let (stream, continuation) = AsyncStream<Value>.makeStream(bufferingPolicy: .bufferingNewest(32))
        continuation.yield(current)
        if ended {
            continuation.finish()
            return stream
        }
        let token = UUID()
        lock.withLock { continuations[key, default: [:]][token] = continuation }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            self.lock.withLock { self.continuations[key]?[token] = nil }
        }
        return stream
    }

    /// Sends `value` to every watcher of `key`; `ended` finishes their streams.
    public func publish(_ key: String, _ value: Value, ended: Bool) {
        let targets = lock.withLock {
            let targets = Array(continuations[key, default: [:]].values)
            if ended { continuations[key] = nil }
            return targets
        }
        for continuation in targets {
            continuation.yield(value)
            if ended { continuation.finish() }
        }
    }
}
