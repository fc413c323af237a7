/// Where ``Repository/prune(referenced:lock:repackUnusedAbove:packSize:dryRun:progress:)`` is, handed to
/// its `progress` closure (on the pruning thread) at the start of each phase and after each step.
public struct PruneProgress: Sendable, Equatable {
    /// The phases, in the order they run.
    public enum Phase: String, Sendable, Equatable {
        /// Reading the index objects and listing the packs (``done`` counts index objects read).
        case planning
        /// Copying the referenced blobs of mostly unused packs into new packs (``done`` counts packs read).
        case repacking
        /// Storing the new index objects (``done`` counts them).
        case writingIndex
        /// Deleting the old index objects.
        case deletingIndex
        /// Deleting the packs no index names any more.
        case deletingPacks
    }

    /// The phase running.
    public var phase: Phase
    /// Steps of the phase done.
    public var done: Int
    /// Steps the phase has.
    public var total: Int

    public init(phase: Phase, done: Int, total: Int) {
        self.phase = phase
        self.done = done
        self.total = total
    }
}
