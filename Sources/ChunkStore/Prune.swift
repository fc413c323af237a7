import Foundation

extension Repository {
    /// Removes what no kept backup needs: packs named by no index object (a writer stopped before its
    /// commit), packs holding no referenced blob, and, for packs whose unreferenced share of sealed
    /// bytes is above `repackUnusedAbove`, everything but their referenced blobs (copied byte for byte
    /// into new packs of `packSize`). The index objects are replaced by one new index (a few when large).
    ///
    /// `referenced` is every blob id of every ``ArtifactRecord`` still kept (``Swift/Set/init(blobsOf:)``);
    /// a blob left out is deleted. `lock` must be an exclusive lock on this repository, held by the
    /// caller for the whole call (a dry run accepts a shared one); and every writer session must hold a
    /// shared lock from before it loads the index until after its last commit, or a prune can delete
    /// packs it is about to name.
    ///
    /// Order, so that a process killed at any point leaves every referenced blob readable and a later
    /// prune finishes the job (docs/repository-format.md, "Prune"):
    /// 1. read every index object and list `data/`; nothing is changed if a referenced blob has no
    ///    location in an existing pack (``ChunkStoreErrorCode/damaged``, naming them);
    /// 2. write the new packs (until the new index names them they are orphans, removed by a later prune);
    /// 3. write the new index objects (every kept and copied blob; old and new index both valid);
    /// 4. delete the old index objects;
    /// 5. delete the packs the new index does not name.
    ///
    /// Before steps 3, 4 and 5 the lock is refreshed; a lost lock stops the prune (``ChunkStoreErrorCode/locked``).
    /// A repacked blob is authenticated before it is copied; a damaged one stops the prune before anything
    /// is deleted. A dry run reads only the index objects and the listings, changes nothing, and
    /// reports what would be done (the sizes of new packs and index objects estimated).
    public func prune(
        referenced: Set<BlobID>, lock: RepositoryLockHandle, repackUnusedAbove: Double = 0.2, packSize: Int = 16 << 20, dryRun: Bool = false,
        progress: (PruneProgress) -> Void = { _ in }
    ) throws -> PruneReport {
        try prune(
            referenced: referenced, lock: lock, repackUnusedAbove: repackUnusedAbove, packSize: packSize, dryRun: dryRun, blobsPerIndexObject: 200_000,
            progress: progress)
    }

    /// ``prune(referenced:lock:repackUnusedAbove:packSize:dryRun:progress:)`` with the size at which the
    /// new index is split into several objects (tests make it small).
    func prune(
        referenced: Set<BlobID>, lock: RepositoryLockHandle, repackUnusedAbove: Double, packSize: Int, dryRun: Bool, blobsPerIndexObject: Int,
        progress: (PruneProgress) -> Void
    ) throws -> PruneReport {
        let started = ContinuousClock.now
        guard repackUnusedAbove >= 0, repackUnusedAbove <= 1 else {
            throw ChunkStoreError(.invalidArgument, "repackUnusedAbove \(repackUnusedAbove) is out of range: give a fraction in [0, 1] (0.2 is the default)")
        }
        guard packSize >= 4096, packSize <= 1 << 30 else {
            throw ChunkStoreError(.invalidArgument, "pack size \(packSize) is out of range: give 4 KiB to 1 GiB (16 MiB is the default)")
        }
        guard lock.location == store.location else {
            throw ChunkStoreError(.misuse, "prune of \(store.location) was given a lock on \(lock.location): take the lock on the repository being pruned")
        }
        guard dryRun || lock.isExclusive else {
            throw ChunkStoreError(.misuse, "prune of \(store.location) needs an exclusive lock, and was given a shared one: take it with lock(exclusive: true, purpose: \"prune\")")
        }
        try lock.check()

        let plan = try PrunePlan.make(repository: self, referenced: referenced, repackUnusedAbove: repackUnusedAbove, progress: progress)
        var report = PruneReport()
        report.dryRun = dryRun
        report.packsBefore = plan.packSizes.count
        report.orphanPacksDeleted = plan.orphans.count
        report.packsDeleted = plan.unused.count
        report.packsRepacked = plan.repack.count
        report.packsKept = plan.kept.count
        report.blobsRepacked = plan.copies.values.reduce(0) { $0 + $1.count }
        report.indexObjectsBefore = plan.indexObjects.count
        report.missingPacks = plan.missingPacks
        report.missingBlobs = plan.missingBlobs
        let indexBytesBefore = plan.indexObjects.reduce(Int64(0)) { $0 + $1.size }
        report.bytesBefore = plan.packSizes.values.reduce(0, +) + indexBytesBefore
        let keptPackBytes = plan.kept.reduce(Int64(0)) { $0 + plan.packSizes[$1]! }
        let newIndex = plan.needsNewIndex(blobsPerIndexObject: blobsPerIndexObject)

        if !plan.missingBlobs.isEmpty, !dryRun { throw missingBlobsError(plan) }
        if dryRun {
            let projected = projectedOutcome(plan, packSize: packSize, newIndex: newIndex, blobsPerIndexObject: blobsPerIndexObject)
            report.packsWritten = projected.packs
            report.blobsKept = plan.keptIndex.count + report.blobsRepacked
            report.indexObjectsAfter = newIndex ? projected.indexObjects : plan.indexObjects.count
            report.bytesAfter = keptPackBytes + projected.packBytes + (newIndex ? projected.indexBytes : indexBytesBefore)
            report.blobsRemoved = plan.blobsBefore - report.blobsKept
            report.duration = ContinuousClock.now - started
            return report
        }

        // 2. New packs.
        let codec = try ZstdCodec()
        let copied = try copyReferencedBlobs(plan, packSize: packSize, codec: codec, progress: progress)
        var index = plan.keptIndex
        index.merge(copied.index)
        report.packsWritten = copied.packsWritten
        report.blobsKept = index.count
        report.blobsRemoved = plan.blobsBefore - index.count
        report.indexObjectsAfter = plan.indexObjects.count
        var indexBytesAfter = indexBytesBefore

        if newIndex {
            // 3. The new index, complete before anything it replaces goes.
            try lock.refresh()
            let parts = index.split(maxBlobs: blobsPerIndexObject)
            indexBytesAfter = 0
            for (n, part) in parts.enumerated() {
                progress(PruneProgress(phase: .writingIndex, done: n, total: parts.count))
                let object = try part.sealedObject(key: masterKey.encryptionKey, codec: codec)
                try store.put(object.name, object.bytes)
                indexBytesAfter += Int64(object.bytes.count)
            }
            progress(PruneProgress(phase: .writingIndex, done: parts.count, total: parts.count))
            report.indexObjectsAfter = parts.count

            // 4. The old index objects.
            try lock.refresh()
            for (n, object) in plan.indexObjects.enumerated() {
                progress(PruneProgress(phase: .deletingIndex, done: n, total: plan.indexObjects.count))
                try store.delete(object.key)
            }
            progress(PruneProgress(phase: .deletingIndex, done: plan.indexObjects.count, total: plan.indexObjects.count))
        }

        // 5. The packs no index names any more.
        let doomed = plan.orphans + plan.unused + plan.repack
        if !doomed.isEmpty { try lock.refresh() }
        for (n, pack) in doomed.enumerated() {
            progress(PruneProgress(phase: .deletingPacks, done: n, total: doomed.count))
            try store.delete(Pack.key(pack))
        }
        progress(PruneProgress(phase: .deletingPacks, done: doomed.count, total: doomed.count))

        report.bytesAfter = keptPackBytes + copied.bytesWritten + indexBytesAfter
        report.duration = ContinuousClock.now - started
        return report
    }

    /// Step 2: copies the referenced blobs of the packs being repacked into new packs, each
    /// authenticated first (a damaged one stops the prune before anything is deleted).
    private func copyReferencedBlobs(_ plan: PrunePlan, packSize: Int, codec: ZstdCodec, progress: (PruneProgress) -> Void) throws -> PackRewriter {
        var rewriter = PackRewriter(repository: self, packSize: packSize, codec: codec)
        for (n, pack) in plan.repack.enumerated() {
            progress(PruneProgress(phase: .repacking, done: n, total: plan.repack.count))
            guard let copies = plan.copies[pack], !copies.isEmpty else { continue }
            let bytes = try store.get(Pack.key(pack))
            for entry in copies {
                let what = "blob \(entry.id.hex) in pack \(Pack.key(pack)) of \(store.location)"
                do {
                    guard entry.offset + entry.length <= bytes.count else {
                        throw ChunkStoreError(.damaged, "\(what): the index places it at \(entry.offset)+\(entry.length), beyond the pack's \(bytes.count) bytes")
                    }
                    try bytes.withUnsafeBytes { raw in
                        let sealed = UnsafeRawBufferPointer(rebasing: raw[entry.offset..<entry.offset + entry.length])
                        let plain = try Envelope.open(
                            sealed, kind: .blob(entry.id), key: masterKey.encryptionKey, codec: codec, expected: entry.plaintextLength, what: what)
                        guard masterKey.blobID(of: plain) == entry.id else {
                            throw ChunkStoreError(.damaged, "\(what): its plaintext does not hash to its id (HMAC mismatch)")
                        }
                        try rewriter.add(sealed, entry: entry)
                    }
                } catch let e as ChunkStoreError where e.code == .damaged {
                    throw ChunkStoreError(
                        .damaged,
                        "prune stopped before deleting anything: \(e.message); the backups using this blob are already broken: "
                            + "run verify to find them, restore the pack from a copy or leave their records out of the referenced set")
                }
            }
        }
        try rewriter.flush()
        progress(PruneProgress(phase: .repacking, done: plan.repack.count, total: plan.repack.count))
        return rewriter
    }

    private func missingBlobsError(_ plan: PrunePlan) -> ChunkStoreError {
        let count = plan.missingBlobs.count
        let shown = plan.missingBlobs.prefix(5).map(\.hex).joined(separator: ", ")
        let orphans = plan.orphans.isEmpty ? "" : " (\(plan.orphans.count) pack\(plan.orphans.count == 1 ? "" : "s") no index names were left in place)"
        return ChunkStoreError(
            .damaged,
            "prune of \(store.location) stopped before changing anything: \(count) referenced blob\(count == 1 ? " is" : "s are") in no index or only in missing packs "
                + "(\(shown)\(count > 5 ? ", ..." : "")); the backups whose records name \(count == 1 ? "it" : "them") are already broken: "
                + "run verify to find them and leave their records out of the referenced set\(orphans)")
    }

    /// What a dry run reports for the packs and index objects it would write (sizes estimated).
    private func projectedOutcome(
        _ plan: PrunePlan, packSize: Int, newIndex: Bool, blobsPerIndexObject: Int
    ) -> (packs: Int, packBytes: Int64, indexObjects: Int, indexBytes: Int64) {
        var packs = 0, packBytes: Int64 = 0, blobs = 0, sealed = 0
        for pack in plan.repack {
            for entry in plan.copies[pack] ?? [] {
                blobs += 1
                sealed += entry.length
                if sealed >= packSize {
                    packs += 1
                    packBytes += PackRewriter.estimatedSize(blobs: blobs, sealedBytes: sealed)
                    (blobs, sealed) = (0, 0)
                }
            }
        }
        if blobs > 0 {
            packs += 1
            packBytes += PackRewriter.estimatedSize(blobs: blobs, sealedBytes: sealed)
        }
        let kept = plan.keptIndex.split(maxBlobs: blobsPerIndexObject)
        let totalBlobs = plan.keptIndex.count + plan.copies.values.reduce(0) { $0 + $1.count }
        let objects = max(kept.count, totalBlobs == 0 ? 0 : (totalBlobs + blobsPerIndexObject - 1) / blobsPerIndexObject)
        // Per object: magic, version, pack count and the seal; per pack: id and count; per blob: 44 bytes.
        let indexBytes = Int64(objects * (9 + Envelope.overhead) + (plan.kept.count + packs) * 36 + totalBlobs * 44)
        return (packs, packBytes, objects, indexBytes)
    }
}

extension Set where Element == BlobID {
    /// Every blob id of `records`: what ``Repository/prune(referenced:lock:repackUnusedAbove:packSize:dryRun:progress:)``
    /// must keep for them.
    public init(blobsOf records: some Sequence<ArtifactRecord>) {
        self.init()
        for record in records { for blob in record.blobs { insert(blob.id) } }
    }
}
