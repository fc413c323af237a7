/// What an operation's body gets: its id, and the way to report progress.
///
/// ``report(_:)`` is synchronous and may be called from any thread (a blocking job's included): updates
/// go into the operation's inbox in call order and the registry applies them one after the other, in
/// that order, before the operation's end.
public struct ProgressContext<Progress: Sendable>: Sendable {
    /// The operation's id.
    public let id: String
    let send: @Sendable (@escaping @Sendable (inout Progress) -> Void, (@Sendable (Progress) -> Void)?) -> Void

    /// Changes the operation's progress (applied in order; how values merge is `Progress`'s
    /// ``OperationProgressValue/merged(with:)``).
    public func report(_ update: @escaping @Sendable (inout Progress) -> Void) {
        send(update, nil)
    }

    /// Changes the operation's progress like ``report(_:)`` (after every update reported before it) and
    /// returns the progress as it is once applied: for a body that decides on the whole of what its
    /// concurrent parts reported (an outcome made of every service's).
    public func updated(_ update: @escaping @Sendable (inout Progress) -> Void = { _ in }) async -> Progress {
        await withCheckedContinuation { (continuation: CheckedContinuation<Progress, Never>) in
            send(update) { continuation.resume(returning: $0) }
        }
    }
}

/// The context of an operation reporting ``OperationProgress``.
public typealias OperationContext = ProgressContext<OperationProgress>

extension ProgressContext where Progress == OperationProgress {
    /// Changes one item of the operation's progress (added when new).
    public func report(item name: String, _ update: @escaping @Sendable (inout OperationProgress.Item) -> Void) {
        send({ $0.update(item: name, update) }, nil)
    }
}
