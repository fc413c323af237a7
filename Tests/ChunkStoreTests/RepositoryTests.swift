import Foundation
import Testing
@testable import ChunkStore

@Suite struct RepositoryTests {
    @Test func roundTripFortyMiB() throws {
        let dir = makeTempDir("roundtrip")
        defer { removeTempDir(dir) }
        // Production chunker and pack sizes; half random, half compressible.
        let repo = try makeRepository(dir, chunker: .standard)
        let data = randomBytes(20 << 20, seed: 10) + textBytes(20 << 20, seed: 11)
        let session = try ChunkedWriter(repository: repo)
        let record = try writeArtifact(session, "pg/teams.dump", data, step: 65_536)
        try session.commit()
        #expect(record.size == Int64(data.count))
        #expect(record.newBytes == Int64(data.count))
        #expect(record.storedBytes < Int64(data.count))  // the text half compresses
        print("round trip: 40 MiB in \(record.blobs.count) blobs, \(record.storedBytes) bytes stored, \(session.statistics.packsWritten) packs")

        let reopened = try Repository.open(store: try FolderStore(root: dir), passphrase: "correct horse")
        let reader = try ChunkedReader(repository: reopened)
        let back = try restore(reader, record)
        #expect(back == data)
        // Consecutive blobs of a pack are read together: a few ranged reads per pack, not one per blob.
        #expect(reader.spansRead >= session.statistics.packsWritten)
        #expect(reader.spansRead < record.blobs.count)
        // The record survives JSON.
        let json = try JSONEncoder().encode(record)
        #expect(try JSONDecoder().decode(ArtifactRecord.self, from: json) == record)
        #expect(try repo.verify(records: [record]).isClean)
    }

    @Test func dedupWithinSessionAndAfterSmallChange() throws {
        let dir = makeTempDir("dedup")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir)
        let data = randomBytes(32 << 20, seed: 20)
        let session = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let first = try writeArtifact(session, "a1", data)
        let again = try writeArtifact(session, "a2", data, step: 77_777)
        #expect(again.newBytes == 0)
        #expect(again.reusedBytes == Int64(data.count))
        #expect(again.blobs == first.blobs)

        // About 2% changed: 3 scattered 4 KiB regions overwritten, 2% appended.
        var changed = data
        for at in [3 << 20, 15 << 20, 27 << 20] { changed.replaceSubrange(at..<at + 4096, with: randomBytes(4096, seed: UInt64(at))) }
        changed += randomBytes(data.count / 50, seed: 21)
        let third = try writeArtifact(session, "a3", changed)
        try session.commit()
        let fraction = Double(third.newBytes) / Double(changed.count)
        print("dedup: 2% changed of 32 MiB: \(third.newBytes) new bytes (\(String(format: "%.1f", fraction * 100))%), \(third.reusedBytes) reused")
        #expect(third.newBytes <= Int64(changed.count) / 10)
        #expect(third.newBytes >= Int64(data.count / 50))

        let reader = try ChunkedReader(repository: repo)
        #expect(try restore(reader, third) == changed)
        #expect(try restore(reader, again) == data)
    }

    @Test func newSessionDedupsAgainstCommittedIndex() throws {
        let dir = makeTempDir("sessions")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir)
        let data = randomBytes(6 << 20, seed: 30) + textBytes(2 << 20, seed: 31)
        let s1 = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let r1 = try writeArtifact(s1, "es/export.ndjson", data)
        let indexName = try s1.commit()
        #expect(indexName?.hasPrefix("index/") == true)
        #expect(try s1.commit() == nil)  // nothing new

        let reopened = try Repository.open(store: try FolderStore(root: dir), passphrase: "correct horse")
        let s2 = try ChunkedWriter(repository: reopened, packSize: testPackSize)
        let r2 = try writeArtifact(s2, "es/export.ndjson", data, step: 4096)
        #expect(r2.newBytes == 0)
        #expect(r2.blobs == r1.blobs)
        #expect(try s2.commit() == nil)
        #expect(s2.statistics.packsWritten == 0)
        #expect(try reopened.store.list(prefix: "index/").count == 1)
        #expect(try restore(try ChunkedReader(repository: reopened), r2) == data)

        // An uncommitted session's packs are not indexed: the next session stores the blobs again.
        let s3 = try ChunkedWriter(repository: reopened, packSize: testPackSize)
        let fresh = randomBytes(1 << 20, seed: 32)
        _ = try writeArtifact(s3, "lost", fresh)
        let s4 = try ChunkedWriter(repository: reopened, packSize: testPackSize)
        #expect(try writeArtifact(s4, "kept", fresh).newBytes == Int64(fresh.count))
    }

    @Test func flippedByteInPack() throws {
        let dir = makeTempDir("damage")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir)
        let s = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let damagedData = randomBytes(6 << 20, seed: 40)
        let a = try writeArtifact(s, "damaged", damagedData)
        try s.commit()
        let b = try writeArtifact(s, "intact", randomBytes(3 << 20, seed: 41))
        try s.commit()

        let index = try repo.loadIndex()
        let location = index.location(of: a.blobs[0].id)!
        let pack = location.pack
        let path = dir + "/" + Pack.key(pack)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        // Inside the first chunk's own sealed bytes (chunks are sealed on two threads: the pack's first
        // blob need not be the artifact's first).
        bytes[location.offset + 100] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let reader = try ChunkedReader(repository: repo)
        var received = 0
        let error = try #require(throws: ChunkStoreError.self) { try reader.restore(a) { received += $0.count } }
        #expect(error.code == .damaged)
        #expect(error.message.contains(Pack.key(pack)))
        #expect(error.message.contains(a.blobs[0].id.hex))
        #expect(received == 0)
        print("damage: reader said: \(error.message)")
        #expect(try restore(reader, b).count == 3 << 20)

        let report = try repo.verify(records: [a, b])
        #expect(report.damaged.map(\.name) == ["damaged"])
        #expect(report.damaged.first?.problems.first?.contains(Pack.key(pack)) == true)
        #expect(report.damagedPacks[Pack.key(pack)]?.contains("SHA-256") == true)
        print("verify: \(report.damaged)")

        // A missing pack is found without reading data.
        try FileManager.default.removeItem(atPath: path)
        let sampled = try repo.verify(records: [a, b], readDataSubset: 0.01)
        #expect(sampled.damaged.map(\.name) == ["damaged"])
        #expect(sampled.damaged[0].problems.contains { $0.contains("missing") })
        #expect(throws: ChunkStoreError.self) { try ChunkedReader(repository: repo).restore(a) { _ in } }
    }

    @Test func keys() throws {
        let dir = makeTempDir("keys")
        defer { removeTempDir(dir) }
        let store = try FolderStore(root: dir)
        let repo = try Repository.initialize(store: store, passphrase: "one", label: "first", chunker: testChunker, kdf: .testing)
        #expect(throws: ChunkStoreError.self) { try Repository.initialize(store: store, passphrase: "x", kdf: .testing) }

        let wrong = try #require(throws: ChunkStoreError.self) { try Repository.open(store: store, passphrase: "two") }
        #expect(wrong.code == .wrongPassphrase)
        #expect(wrong.message.contains("1 key tried"))
        #expect(wrong.message.contains(dir))

        let s = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let data = randomBytes(1 << 20, seed: 50)
        let record = try writeArtifact(s, "x", data)
        try s.commit()

        let firstID = try #require(try repo.listKeys().first?.id)
        let secondID = try repo.addKey(passphrase: "two", label: "second", kdf: .testing)
        #expect(try repo.listKeys().map(\.label).sorted() == ["first", "second"])
        try repo.removeKey(id: firstID)
        #expect(throws: ChunkStoreError.self) { try Repository.open(store: store, passphrase: "one") }
        let withTwo = try Repository.open(store: store, passphrase: "two")
        #expect(try restore(try ChunkedReader(repository: withTwo), record) == data)

        let last = try #require(throws: ChunkStoreError.self) { try withTwo.removeKey(id: secondID) }
        #expect(last.code == .lastKey)
        let missing = try #require(throws: ChunkStoreError.self) { try withTwo.removeKey(id: firstID) }
        #expect(missing.code == .keyMissing)

        let notRepo = try #require(throws: ChunkStoreError.self) { try Repository.open(store: try FolderStore(root: dir + "/nothing"), passphrase: "two") }
        #expect(notRepo.code == .notARepository)
    }

    /// A record changed after it was written (blobs swapped or dropped, digest edited) or taken to
    /// another repository is refused before any byte is handed over.
    @Test func recordsAreAuthenticated() throws {
        let dir = makeTempDir("records")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir)
        let session = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let data = randomBytes(3 << 20, seed: 95)
        let record = try writeArtifact(session, "r", data)
        try session.commit()
        #expect(record.blobs.count > 2)
        #expect(record.digest == repo.masterKey.artifactDigest(size: record.size, blobs: record.blobs).hex)
        let reader = try ChunkedReader(repository: repo)
        #expect(try restore(reader, record) == data)

        var swapped = record
        swapped.blobs.swapAt(0, 1)
        var dropped = record
        dropped.size -= Int64(dropped.blobs.removeLast().size)
        var edited = record
        edited.digest = String(repeating: "0", count: 64)
        for (label, bad) in [("swapped", swapped), ("dropped", dropped), ("edited", edited)] {
            var received = 0
            let error = try #require(throws: ChunkStoreError.self, "\(label)") { try reader.restore(bad) { received += $0.count } }
            #expect(error.code == .damaged)
            #expect(error.message.contains("does not match its digest"), "\(error.message)")
            #expect(received == 0)
        }
        let otherDir = makeTempDir("records-other")
        defer { removeTempDir(otherDir) }
        let other = try makeRepository(otherDir)
        #expect(other.masterKey.artifactDigest(size: record.size, blobs: record.blobs).hex != record.digest)
    }

    @Test func sealedBlobsAreBoundToTheirIDs() throws {
        let key = MasterKey.random()
        let codec = try ZstdCodec()
        let a = textBytes(100_000, seed: 60), b = randomBytes(1000, seed: 61)
        let ida = key.blobID(of: a), idb = key.blobID(of: b)
        let sealedA = try a.withUnsafeBytes { try Envelope.seal($0, kind: .blob(ida), key: key.encryptionKey, codec: codec) }
        let sealedB = try b.withUnsafeBytes { try Envelope.seal($0, kind: .blob(idb), key: key.encryptionKey, codec: codec) }
        #expect(sealedA.count < a.count / 4)  // compressed
        #expect(sealedB.count == b.count + Envelope.overhead)  // stored raw: compression did not help
        #expect(try sealedA.withUnsafeBytes { try Envelope.open($0, kind: .blob(ida), key: key.encryptionKey, codec: codec, what: "a") } == a)
        // Opened under another id (a swapped blob): refused.
        #expect(throws: ChunkStoreError.self) {
            try sealedA.withUnsafeBytes { try Envelope.open($0, kind: .blob(idb), key: key.encryptionKey, codec: codec, what: "a as b") }
        }
        // Another repository's key: refused, and ids differ.
        let other = MasterKey.random()
        #expect(other.blobID(of: a) != ida)
        #expect(throws: ChunkStoreError.self) {
            try sealedA.withUnsafeBytes { try Envelope.open($0, kind: .blob(ida), key: other.encryptionKey, codec: codec, what: "a") }
        }
    }

    @Test func concurrentArtifactsShareOneSession() throws {
        let dir = makeTempDir("concurrent")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir)
        let session = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let shared = randomBytes(4 << 20, seed: 90)
        let inputs = [shared + randomBytes(2 << 20, seed: 91), shared + randomBytes(2 << 20, seed: 92)]
        let results = ResultBox(count: inputs.count)
        DispatchQueue.concurrentPerform(iterations: inputs.count) { i in
            results.set(i, Result { try writeArtifact(session, "part\(i)", inputs[i]) })
        }
        try session.commit()
        let records = try results.values.map { try $0!.get() }
        // The shared 4 MiB is stored once (give or take the chunk where the inputs diverge).
        let stats = session.statistics
        #expect(stats.newBytes + stats.reusedBytes == Int64(inputs[0].count + inputs[1].count))
        #expect(stats.newBytes < Int64(4 << 20 + 4 << 20 + 2 << 20))
        let reader = try ChunkedReader(repository: repo)
        for (i, r) in records.enumerated() { #expect(try restore(reader, r) == inputs[i]) }
    }

    /// A pack the store cannot take (its `data` folder is a file: ENOTDIR, even for root) fails the
    /// artifact with the store's error, from the sealing thread to the writer, without hanging; an
    /// artifact abandoned unfinished stops its thread.
    @Test(.timeLimit(.minutes(1))) func storeFailureReachesTheWriter() throws {
        let dir = makeTempDir("store-failure")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir)
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: dir + "/data"))
        let session = try ChunkedWriter(repository: repo, packSize: 64 << 10)
        let error = #expect(throws: ChunkStoreError.self) {
            _ = try writeArtifact(session, "doomed", randomBytes(8 << 20, seed: 80))
        }
        #expect(error?.description.contains("cannot store data/") == true, "\(String(describing: error))")
        #expect(error?.description.contains("/data (it exists and is not a folder)") == true, "\(String(describing: error))")

        let good = makeTempDir("abandoned")
        defer { removeTempDir(good) }
        let other = try ChunkedWriter(repository: try makeRepository(good))
        var abandoned: ArtifactWriter? = try other.artifact(name: "abandoned")
        try abandoned?.write(randomBytes(1 << 20, seed: 81))
        abandoned = nil
        let record = try writeArtifact(other, "after", randomBytes(1 << 20, seed: 82))
        #expect(record.size == 1 << 20)
    }

    @Test func throughputSixtyFourMiB() throws {
        let dir = makeTempDir("throughput")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir, chunker: .standard)
        let data = randomBytes(64 << 20, seed: 70)
        let start = Date()
        let session = try ChunkedWriter(repository: repo)
        let record = try writeArtifact(session, "big", data, step: 1 << 20)
        try session.commit()
        let written = Date()
        var count = 0
        try ChunkedReader(repository: repo).restore(record) { count += $0.count }
        let read = Date()
        #expect(count == data.count)
        let mb = Double(data.count) / 1_000_000
        print(
            "throughput (debug build, 64 MiB random, folder store): write \(String(format: "%.0f", mb / written.timeIntervalSince(start))) MB/s, "
                + "read \(String(format: "%.0f", mb / read.timeIntervalSince(written))) MB/s")
    }

    /// The standard cost is what key files record and what opening them takes (its time is printed, not
    /// asserted: timings belong in benchmarks, and a loaded test machine varies by several times).
    @Test func scryptStandardCost() throws {
        let master = MasterKey.random()
        let start = Date()
        let file = try KeyFile.make(master: master, passphrase: "p", label: "timing", kdf: .standard)
        let seconds = Date().timeIntervalSince(start)
        print("scrypt standard (N=2^15 r=8 p=1, debug build): \(String(format: "%.3f", seconds)) s")
        #expect(file.kdf == "scrypt" && file.n == 1 << 15 && file.r == 8 && file.p == 1, "\(file)")
        #expect(try file.open(passphrase: "p", name: "timing")?.serialized == master.serialized)
    }
}

/// Results filled in from several threads.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<ArtifactRecord, any Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<ArtifactRecord, any Error>) { lock.withLock { slots[i] = r } }
    var values: [Result<ArtifactRecord, any Error>?] { lock.withLock { slots } }
}
