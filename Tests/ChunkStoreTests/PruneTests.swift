import Foundation
import Testing
@testable import ChunkStore

/// A repository with kept and dropped artifacts: `kept` (records and their bytes) and `dropped`.
struct PruneFixture {
    let dir: String
    let repo: Repository
    var kept: [(record: ArtifactRecord, data: [UInt8])] = []
    var dropped: [ArtifactRecord] = []

    var referenced: Set<BlobID> { Set(blobsOf: kept.map(\.record)) }

    /// Every kept record restores byte for byte (through a fresh index) and verify finds nothing wrong.
    func expectKeptReadable(_ repository: Repository? = nil, _ comment: Comment? = nil) throws {
        let repo = repository ?? self.repo
        let reader = try ChunkedReader(repository: repo)
        for (record, data) in kept { #expect(try restore(reader, record) == data, comment) }
        let report = try repo.verify(records: kept.map(\.record))
        #expect(report.isClean, "\(report) \(comment.map { "\($0)" } ?? "")")
    }

    /// Prunes with an exclusive lock taken and released around it.
    func prune(
        _ repository: Repository? = nil, repackUnusedAbove: Double = 0.2, packSize: Int = 1 << 20, dryRun: Bool = false, blobsPerIndexObject: Int = 200_000
    ) throws -> PruneReport {
        let repo = repository ?? self.repo
        let lock = try self.repo.lock(exclusive: true, purpose: "prune test")
        defer { try? lock.release() }
        return try repo.prune(
            referenced: referenced, lock: lock, repackUnusedAbove: repackUnusedAbove, packSize: packSize, dryRun: dryRun,
            blobsPerIndexObject: blobsPerIndexObject, progress: { _ in })
    }
}

@Suite struct PruneTests {
    /// Three commits: `a` (kept), `b` (dropped), `c` (kept, half of it `a`'s bytes again).
    func threeBackups(_ tag: String) throws -> PruneFixture {
        let dir = makeTempDir(tag)
        var f = PruneFixture(dir: dir, repo: try makeRepository(dir))
        let s = try ChunkedWriter(repository: f.repo, packSize: 1 << 20)
        let a = randomBytes(3 << 20, seed: 100), b = randomBytes(3 << 20, seed: 101)
        let c = Array(a.prefix(3 << 19)) + randomBytes(2 << 20, seed: 102)
        f.kept.append((try writeArtifact(s, "a", a), a))
        try s.commit()
        f.dropped.append(try writeArtifact(s, "b", b))
        try s.commit()
        f.kept.append((try writeArtifact(s, "c", c), c))
        try s.commit()
        return f
    }

    @Test func pruneFreesWhatDroppedRecordsUsed() throws {
        let f = try threeBackups("prune-drop")
        defer { removeTempDir(f.dir) }
        let before = try packAndIndexBytes(f.repo.store)
        var phases: [PruneProgress.Phase] = []
        let lock = try f.repo.lock(exclusive: true, purpose: "prune")
        let report = try f.repo.prune(referenced: f.referenced, lock: lock, packSize: 1 << 20) { phases.append($0.phase) }
        try lock.release()
        print("prune: \(report)")

        #expect(report.bytesBefore == before)
        #expect(report.bytesAfter == (try packAndIndexBytes(f.repo.store)))
        #expect(report.bytesFreed > 2 << 20)  // most of b's 3 MiB (its packs may hold a little of c)
        #expect(report.packsDeleted >= 2)
        #expect(report.indexObjectsBefore == 3)
        #expect(report.indexObjectsAfter == 1)
        #expect(try f.repo.store.list(prefix: "index/").count == 1)
        #expect(report.blobsRemoved > 0)
        #expect(report.missingBlobs.isEmpty)
        #expect(phases.first == .planning && phases.last == .deletingPacks)
        try f.expectKeptReadable()
        // Nothing unindexed is left, and b's own blobs are gone from the index.
        #expect(try unindexedPacks(f.repo).isEmpty)
        let index = try f.repo.loadIndex()
        let bOnly = Set(blobsOf: f.dropped).subtracting(f.referenced)
        #expect(!bOnly.isEmpty && bOnly.allSatisfy { !index.contains($0) })
        #expect(throws: ChunkStoreError.self) { try ChunkedReader(repository: f.repo).restore(f.dropped[0]) { _ in } }

        // A second prune has nothing to do.
        let again = try f.prune()
        #expect(again.packsDeleted == 0 && again.packsRepacked == 0 && again.orphanPacksDeleted == 0 && again.bytesFreed == 0)
        #expect(again.indexObjectsAfter == 1)
    }

    @Test func dryRunChangesNothing() throws {
        let f = try threeBackups("prune-dry")
        defer { removeTempDir(f.dir) }
        let before = try snapshot(f.repo.store)
        let dry = try f.prune(dryRun: true)
        #expect(try snapshot(f.repo.store) == before)
        #expect(dry.dryRun)
        #expect(try f.repo.store.list(prefix: "locks/").isEmpty)

        let real = try f.prune()
        print("prune dry run: \(dry)\nreal: \(real)")
        #expect(dry.packsDeleted == real.packsDeleted)
        #expect(dry.packsRepacked == real.packsRepacked)
        #expect(dry.packsKept == real.packsKept)
        #expect(dry.packsWritten == real.packsWritten)
        #expect(dry.blobsRemoved == real.blobsRemoved)
        #expect(dry.indexObjectsAfter == real.indexObjectsAfter)
        #expect(dry.bytesBefore == real.bytesBefore)
        #expect(abs(dry.bytesAfter - real.bytesAfter) < real.bytesAfter / 50)  // new pack headers and the index are estimated
        try f.expectKeptReadable()
    }

    @Test func orphanPacksAreRemoved() throws {
        let dir = makeTempDir("prune-orphans")
        defer { removeTempDir(dir) }
        var f = PruneFixture(dir: dir, repo: try makeRepository(dir))
        let s = try ChunkedWriter(repository: f.repo, packSize: 1 << 20)
        let a = randomBytes(2 << 20, seed: 110)
        f.kept.append((try writeArtifact(s, "a", a), a))
        try s.commit()
        // A session that stores full packs, then stops without its commit.
        let lost = try ChunkedWriter(repository: f.repo, packSize: 1 << 20)
        _ = try writeArtifact(lost, "lost", randomBytes(3 << 20, seed: 111))
        try lost.waitForQueuedPacks()  // its full packs are stored by a thread of its own
        let orphans = try unindexedPacks(f.repo)
        #expect(orphans.count >= 2)

        let report = try f.prune()
        #expect(report.orphanPacksDeleted == orphans.count)
        #expect(report.packsDeleted == 0 && report.packsRepacked == 0)
        #expect(report.indexObjectsAfter == 1)
        #expect(try unindexedPacks(f.repo).isEmpty)
        for pack in orphans { #expect(try !f.repo.store.exists(Pack.key(pack))) }
        try f.expectKeptReadable()
    }

    @Test func halfUsedPackIsRepacked() throws {
        let dir = makeTempDir("prune-repack")
        defer { removeTempDir(dir) }
        var f = PruneFixture(dir: dir, repo: try makeRepository(dir))
        let s = try ChunkedWriter(repository: f.repo, packSize: 8 << 20)
        let a = randomBytes(2 << 20, seed: 120)
        f.kept.append((try writeArtifact(s, "a", a), a))
        f.dropped.append(try writeArtifact(s, "b", randomBytes(2 << 20, seed: 121)))
        try s.commit()
        let old = try f.repo.store.listWithSizes(prefix: "data/")
        #expect(old.count == 1)

        // Half unused: kept below a 0.9 threshold (a dry run says so), repacked above 0.2.
        let lenient = try f.prune(repackUnusedAbove: 0.9, packSize: 8 << 20, dryRun: true)
        #expect(lenient.packsKept == 1 && lenient.packsRepacked == 0 && lenient.bytesFreed == 0)
        let report = try f.prune(repackUnusedAbove: 0.2, packSize: 8 << 20)
        #expect(report.packsRepacked == 1)
        #expect(report.packsWritten == 1)
        #expect(report.blobsRepacked == Set(blobsOf: f.kept.map(\.record)).count)
        let new = try f.repo.store.listWithSizes(prefix: "data/")
        #expect(new.count == 1 && new[0].key != old[0].key)
        #expect(new[0].size < old[0].size * 6 / 10)
        #expect(report.bytesAfter == (try packAndIndexBytes(f.repo.store)))
        try f.expectKeptReadable()
        let index = try f.repo.loadIndex()
        #expect(Set(blobsOf: f.dropped).allSatisfy { !index.contains($0) })
    }

    @Test func referencedBlobMissingStopsBeforeAnyChange() throws {
        let f = try threeBackups("prune-missing")
        defer { removeTempDir(f.dir) }
        let pack = try f.repo.loadIndex().location(of: f.kept[0].record.blobs[0].id)!.pack
        try f.repo.store.delete(Pack.key(pack))
        let before = try snapshot(f.repo.store)

        let dry = try f.prune(dryRun: true)
        #expect(!dry.missingBlobs.isEmpty)
        #expect(dry.missingBlobs.contains(f.kept[0].record.blobs[0].id))
        let error = try #require(throws: ChunkStoreError.self) { try f.prune() }
        #expect(error.code == .damaged)
        #expect(error.message.contains("\(dry.missingBlobs.count) referenced blob"))
        #expect(error.message.contains(f.kept[0].record.blobs[0].id.hex) || dry.missingBlobs.count > 5)
        #expect(error.message.contains("before changing anything"))
        print("prune, blob missing: \(error.message)")
        #expect(try snapshot(f.repo.store) == before)
    }

    @Test func misuseIsRefused() throws {
        let f = try threeBackups("prune-misuse")
        defer { removeTempDir(f.dir) }
        let before = try snapshot(f.repo.store)
        let shared = try f.repo.lock(exclusive: false, purpose: "reader")
        let sharedError = try #require(throws: ChunkStoreError.self) { try f.repo.prune(referenced: f.referenced, lock: shared) }
        #expect(sharedError.code == .misuse)
        #expect(try f.repo.prune(referenced: f.referenced, lock: shared, dryRun: true).dryRun)  // a dry run may share
        try shared.release()

        let otherDir = makeTempDir("prune-misuse-other")
        defer { removeTempDir(otherDir) }
        let other = try makeRepository(otherDir).lock(exclusive: true, purpose: "elsewhere")
        let elsewhere = try #require(throws: ChunkStoreError.self) { try f.repo.prune(referenced: f.referenced, lock: other) }
        #expect(elsewhere.code == .misuse)

        let released = try f.repo.lock(exclusive: true, purpose: "prune")
        try released.release()
        let afterRelease = try #require(throws: ChunkStoreError.self) { try f.repo.prune(referenced: f.referenced, lock: released) }
        #expect(afterRelease.code == .misuse)
        #expect(try snapshot(f.repo.store) == before)
    }

    @Test func largeIndexIsSplit() throws {
        let f = try threeBackups("prune-split")
        defer { removeTempDir(f.dir) }
        let report = try f.prune(blobsPerIndexObject: 8)
        #expect(report.indexObjectsAfter >= 2)
        #expect(try f.repo.store.list(prefix: "index/").count == report.indexObjectsAfter)
        try f.expectKeptReadable()
        let again = try f.prune(blobsPerIndexObject: 8)
        #expect(again.indexObjectsAfter == report.indexObjectsAfter && again.bytesFreed == 0)
    }

    /// A prune killed after each of its writes and deletes in turn: every kept record stays readable,
    /// and a later prune finishes the job.
    @Test func killedAtAnyPointLosesNothing() throws {
        let template = makeTempDir("prune-kill-template")
        defer { removeTempDir(template) }
        var f = PruneFixture(dir: template, repo: try makeRepository(template))
        // One session: a (kept) and x (dropped) share packs, so some are half used (repacked) and some
        // only x's (deleted); c in a second commit (a second index object); an uncommitted session
        // leaves orphan packs.
        let s = try ChunkedWriter(repository: f.repo, packSize: 1 << 20)
        let a = randomBytes(2 << 20, seed: 130), c = randomBytes(2 << 20, seed: 132)
        f.kept.append((try writeArtifact(s, "a", a), a))
        f.dropped.append(try writeArtifact(s, "x", randomBytes(3 << 20, seed: 131)))
        try s.commit()
        f.kept.append((try writeArtifact(s, "c", c), c))
        try s.commit()
        _ = try writeArtifact(try ChunkedWriter(repository: f.repo, packSize: 1 << 20), "lost", randomBytes(2 << 20, seed: 133))
        let passphrase = "correct horse"

        var allowed = 0
        while true {
            let dir = makeTempDir("prune-kill-\(allowed)")
            defer { removeTempDir(dir) }
            try FileManager.default.removeItem(atPath: dir)
            try FileManager.default.copyItem(atPath: template, toPath: dir)
            let plain = try Repository.open(store: try FolderStore(root: dir), passphrase: passphrase)
            let crashing = CrashingStore(plain.store, mutationsAllowed: allowed)
            let repo = try Repository.open(store: crashing, passphrase: passphrase)
            let run = PruneFixture(dir: dir, repo: plain, kept: f.kept, dropped: f.dropped)
            do {
                let report = try run.prune(repo)
                #expect(!crashing.didCrash)
                print("prune kill test: completes with \(allowed) writes and deletes: \(report)")
                #expect(report.packsRepacked >= 1 && report.packsDeleted >= 1 && report.orphanPacksDeleted >= 1 && report.indexObjectsBefore == 2, "\(report)")
                try run.expectKeptReadable(plain)
                break
            } catch let e as ChunkStoreError where e.message.contains("simulated crash") {
                // Killed here: what is left must restore, and a fresh prune must finish the job.
                try run.expectKeptReadable(plain, "killed after \(allowed) changes")
                let finish = try run.prune(plain)
                try run.expectKeptReadable(plain, "pruned after being killed after \(allowed) changes")
                #expect(try unindexedPacks(plain).isEmpty)
                #expect(finish.indexObjectsAfter == 1)
                let third = try run.prune(plain)
                #expect(third.packsDeleted + third.packsRepacked + third.orphanPacksDeleted == 0 && third.bytesFreed == 0, "after \(allowed)")
                #expect(try plain.store.list(prefix: "locks/").isEmpty)
            }
            allowed += 1
            try #require(allowed < 100)
        }
        #expect(allowed >= 6)
    }
}
