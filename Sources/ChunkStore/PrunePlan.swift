/// What a prune will do, worked out from the index objects, the listing of `data/` and the referenced
/// blobs, before anything is changed.
struct PrunePlan {
    /// The index objects read (deleted once the new index is stored).
    var indexObjects: [StoredObject] = []
    /// Every pack in `data/`, with its size.
    var packSizes: [PackID: Int64] = [:]
    /// Packs no index object names.
    var orphans: [PackID] = []
    /// Indexed packs holding no referenced blob.
    var unused: [PackID] = []
    /// Indexed packs whose unreferenced share (by sealed bytes) is above the threshold.
    var repack: [PackID] = []
    /// Indexed packs kept as they are.
    var kept: [PackID] = []
    /// Packs an index names that are not in `data/`.
    var missingPacks: [PackID] = []
    /// Referenced blobs with no location in an existing pack, sorted.
    var missingBlobs: [BlobID] = []
    /// The referenced blobs to copy out of each pack in ``repack``, by offset.
    var copies: [PackID: [PackEntry]] = [:]
    /// Every index entry in a kept pack (a referenced blob at the location chosen for it).
    var keptIndex = RepositoryIndex()
    /// Blobs the old index objects name.
    var blobsBefore = 0

    /// Whether the index objects must be replaced (something they name goes, or they can be merged).
    func needsNewIndex(blobsPerIndexObject: Int) -> Bool {
        !unused.isEmpty || !repack.isEmpty || !missingPacks.isEmpty || indexObjects.count > keptIndex.split(maxBlobs: blobsPerIndexObject).count
    }

    /// Reads every index object, lists `data/`, and sorts the packs.
    static func make(
        repository: Repository, referenced: Set<BlobID>, repackUnusedAbove threshold: Double, progress: (PruneProgress) -> Void
    ) throws -> PrunePlan {
        let store = repository.store
        var plan = PrunePlan()
        let codec = try ZstdCodec()

        // Every (blob, pack) pair the index objects name: the first location of each blob in `merged`,
        // others (the same blob stored by two sessions, or a prune stopped after writing its new index)
        // in `duplicates`.
        plan.indexObjects = try store.listWithSizes(prefix: "index/")
        var merged = RepositoryIndex()
        var duplicates: [BlobID: [BlobLocation]] = [:]
        var packBytes: [PackID: Int] = [:]
        for (n, object) in plan.indexObjects.enumerated() {
            progress(PruneProgress(phase: .planning, done: n, total: plan.indexObjects.count))
            let sealed = try store.get(object.key)
            let plain = try sealed.withUnsafeBytes {
                try Envelope.open($0, kind: .index, key: repository.masterKey.encryptionKey, codec: codec, what: "index object \(object.key) in \(store.location)")
            }
            try RepositoryIndex.parse(plain, name: object.key).forEach { id, loc in
                if let first = merged.location(of: id) {
                    guard first.pack != loc.pack, !(duplicates[id]?.contains { $0.pack == loc.pack } ?? false) else { return }
                    duplicates[id, default: []].append(loc)
                } else {
                    merged.insert(id, loc)
                }
                packBytes[loc.pack, default: 0] += loc.length
            }
        }
        plan.blobsBefore = merged.count

        for object in try store.listWithSizes(prefix: "data/") {
            // Only keys that are exactly a pack's key: anything else in data/ is not the prune's to delete.
            guard let id = Pack.id(fromKey: object.key), Pack.key(id) == object.key else { continue }
            plan.packSizes[id] = object.size
        }
        plan.orphans = plan.packSizes.keys.filter { packBytes[$0] == nil }.sorted()
        plan.missingPacks = packBytes.keys.filter { plan.packSizes[$0] == nil }.sorted()

        // A location in an existing pack for each referenced blob; of several, the one in the pack with
        // the largest referenced share (a prune stopped after writing its new index left the copies in new,
        // fully referenced packs: they are kept and the old packs go).
        var referencedBytes: [PackID: Int] = [:]
        if !duplicates.isEmpty {
            for id in referenced {
                guard let first = merged.location(of: id) else { continue }
                for loc in [first] + (duplicates[id] ?? []) { referencedBytes[loc.pack, default: 0] += loc.length }
            }
        }
        func share(_ pack: PackID) -> Double { Double(referencedBytes[pack] ?? 0) / Double(packBytes[pack]!) }
        var chosen: [BlobID: BlobLocation] = [:]
        chosen.reserveCapacity(referenced.count)
        var used: [PackID: Int] = [:]
        for id in referenced {
            var candidates = (merged.location(of: id).map { [$0] } ?? []).filter { plan.packSizes[$0.pack] != nil }
            if let others = duplicates[id] {
                candidates += others.filter { plan.packSizes[$0.pack] != nil }
                candidates.sort { share($0.pack) > share($1.pack) }
            }
            guard let loc = candidates.first else {
                plan.missingBlobs.append(id)
                continue
            }
            chosen[id] = loc
            used[loc.pack, default: 0] += loc.length
        }
        plan.missingBlobs.sort()

        for pack in packBytes.keys.sorted() where plan.packSizes[pack] != nil {
            let total = packBytes[pack]!, usedBytes = used[pack] ?? 0
            if usedBytes == 0 {
                plan.unused.append(pack)
            } else if Double(total - usedBytes) / Double(total) > threshold {
                plan.repack.append(pack)
            } else {
                plan.kept.append(pack)
            }
        }
        let kept = Set(plan.kept)

        // A referenced blob chosen in a pack that goes but also stored in a kept pack: use the kept copy.
        for (id, others) in duplicates {
            guard let loc = chosen[id], !kept.contains(loc.pack),
                let better = (others + [merged.location(of: id)!]).first(where: { kept.contains($0.pack) })
            else { continue }
            chosen[id] = better
        }

        let repack = Set(plan.repack)
        for (id, loc) in chosen {
            if kept.contains(loc.pack) {
                plan.keptIndex.insert(id, loc)
            } else if repack.contains(loc.pack) {
                plan.copies[loc.pack, default: []].append(PackEntry(id: id, offset: loc.offset, length: loc.length, plaintextLength: loc.plaintextLength))
            }
        }
        for pack in plan.copies.keys { plan.copies[pack]!.sort { $0.offset < $1.offset } }
        // Unreferenced blobs of kept packs stay indexed (a later backup may store them again for free).
        merged.forEach { id, loc in if kept.contains(loc.pack) { plan.keptIndex.insert(id, loc) } }
        for (id, locs) in duplicates {
            for loc in locs where kept.contains(loc.pack) { plan.keptIndex.insert(id, loc) }
        }
        return plan
    }
}
