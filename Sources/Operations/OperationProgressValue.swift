/// What a ``ProgressRegistry``'s operations report as they run: ``OperationProgress`` for a worker, or a
/// richer status of its own (the deployment-service's stack backups and restores).
public protocol OperationProgressValue: Sendable, Equatable {
    /// `self` moved on by `next`, a reported update applied to a copy of `self`: what the registry stores.
    /// A value that must never go back (counts, phases) keeps the larger of the two here.
    func merged(with next: Self) -> Self

    /// Whether `other` differs from `self` only in what watchers may get coalesced, at most once per
    /// publish interval (byte counts); a change of anything else is a milestone, published at once.
    func hasSameMilestones(as other: Self) -> Bool

    /// The last progress of an operation that completed (its phases done, say).
    func completed() -> Self
}
