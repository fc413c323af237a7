/// What an operation's body gets: its id, and the way to report progress.
///
/// ``report(_:)`` is synchronous and may be called from any thread (a blocking job's included): updates
/// go into the operation's inbox in call order and the registry applies them one after the other, in
/// that order, before the operation's end.
public struct OperationContext: Sendable {
    /// The operation's id.
    public let id: String
    let send: @Sendable (@escaping @Sendable (inout OperationProgress) -> Void) -> Void

    /// Changes the operation's progress (applied in order; counts and phases never go back).
    public func report(_ update: @escaping @Sendable (inout OperationProgress) -> Void) {
        send(update)
    }

    /// Changes one item of the operation's progress (added when new).
    public func report(item name: String, _ update: @escaping @Sendable (inout OperationProgress.Item) -> Void) {
        send { $0.update(item: name, update) }
    }
}
