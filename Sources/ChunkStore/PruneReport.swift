/// What ``Repository/prune(referenced:lock:repackUnusedAbove:packSize:dryRun:progress:)`` did, or, for a
/// dry run, would do (sizes of packs and index objects it would write are then estimates).
public struct PruneReport: Sendable, Equatable {
    /// True when nothing was changed.
    public var dryRun = false
    /// Packs in `data/` before.
    public var packsBefore = 0
    /// Indexed packs holding no referenced blob: deleted.
    public var packsDeleted = 0
    /// Packs named by no index object (a writer that stopped before its commit): deleted.
    public var orphanPacksDeleted = 0
    /// Packs whose unreferenced share was above the threshold: their referenced blobs were copied into
    /// new packs, then they were deleted.
    public var packsRepacked = 0
    /// Packs kept as they are.
    public var packsKept = 0
    /// New packs written by the repacking.
    public var packsWritten = 0
    /// Referenced blobs copied into new packs.
    public var blobsRepacked = 0
    /// Blobs the index named before and does not any more.
    public var blobsRemoved = 0
    /// Blobs the index names after.
    public var blobsKept = 0
    /// Index objects before.
    public var indexObjectsBefore = 0
    /// Index objects after.
    public var indexObjectsAfter = 0
    /// Bytes of packs and index objects before.
    public var bytesBefore: Int64 = 0
    /// Bytes of packs and index objects after.
    public var bytesAfter: Int64 = 0
    /// Packs an index object named that were not in the store; their entries were dropped (only
    /// unreferenced blobs: a referenced blob there stops the prune).
    public var missingPacks: [PackID] = []
    /// Referenced blobs in no index, or only in missing packs (sorted). A dry run lists them; a real run
    /// throws ``ChunkStoreErrorCode/damaged`` instead, before changing anything.
    public var missingBlobs: [BlobID] = []
    /// How long it took.
    public var duration: Duration = .zero

    /// `bytesBefore - bytesAfter`.
    public var bytesFreed: Int64 { bytesBefore - bytesAfter }

    public init() {}
}
