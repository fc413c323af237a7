import Foundation
import Logging
import S3Client
import S3Gateway
import Testing
@testable import ChunkStore

/// Runs blocking work on a thread of its own (the in-process gateway needs the cooperative pool).
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        let t = Thread { cont.resume(with: Result { try body() }) }
        t.stackSize = 4 << 20
        t.start()
    }
}

@Suite struct S3StoreTests {
    /// A repository in a bucket of the real backup-gateway (filesystem mode, in process), through S3Client.
    @Test func roundTripThroughBackupGateway() async throws {
        let root = makeTempDir("gateway")
        defer { removeTempDir(root) }
        try FileManager.default.createDirectory(atPath: root + "/repo", withIntermediateDirectories: true)
        var logger = Logger(label: "chunkstore-gateway-test")
        logger.logLevel = .critical
        let creds = Credentials(accessKeyId: "AKIDCHUNKSTORE", secretAccessKey: "chunk/store+secret")
        let gateway = try await RunningGateway.start(
            GatewayConfig(port: 0, mode: .filesystem(root: root, buckets: [:]), credentials: creds, region: "us-east-1"), logger: logger)
        let client = S3Client(
            endpoint: "http://127.0.0.1:\(gateway.port)", credentials: S3Credentials(accessKeyID: creds.accessKeyId, secretAccessKey: creds.secretAccessKey))
        let result: Result<Void, any Error> = await Result(catching: {
            try await blocking {
                let store = S3ObjectStore(client: client, bucket: "repo", prefix: "chunks")
                let repo = try Repository.initialize(store: store, passphrase: "s3 pass", chunker: testChunker, kdf: .testing)
                let data = randomBytes(5 << 20, seed: 80) + textBytes(1 << 20, seed: 81)
                let session = try ChunkedWriter(repository: repo, packSize: 2 << 20)
                let record = try writeArtifact(session, "s3", data)
                try session.commit()
                #expect(session.statistics.packsWritten >= 2)

                let reopened = try Repository.open(store: S3ObjectStore(client: client, bucket: "repo", prefix: "chunks/"), passphrase: "s3 pass")
                #expect(try restore(try ChunkedReader(repository: reopened), record) == data)
                #expect(try reopened.verify(records: [record]).isClean)
                #expect(try store.list(prefix: "keys/").count == 1)
                #expect(try store.exists("config"))
                #expect(try !store.exists("nothing"))
                let missing = try #require(throws: ChunkStoreError.self) { try store.get("nothing") }
                #expect(missing.code == .objectMissing)

                // Locks and prune through S3: sizes come from the listing.
                let packs = try store.listWithSizes(prefix: "data/")
                #expect(packs.count == session.statistics.packsWritten && packs.allSatisfy { $0.size > 0 })
                let lock = try reopened.lock(exclusive: true, purpose: "prune")
                #expect(throws: ChunkStoreError.self) { try repo.lock(exclusive: false, purpose: "backup") }
                let kept = try reopened.prune(referenced: Set(blobsOf: [record]), lock: lock, packSize: 2 << 20)
                #expect(kept.packsKept == packs.count && kept.bytesFreed == 0)
                #expect(kept.bytesBefore == (try packAndIndexBytes(store)))
                let emptied = try reopened.prune(referenced: [], lock: lock)
                #expect(emptied.packsDeleted == packs.count && emptied.indexObjectsAfter == 0 && emptied.bytesAfter == 0)
                #expect(try store.list(prefix: "data/").isEmpty && store.list(prefix: "index/").isEmpty)
                try lock.release()
                #expect(try store.list(prefix: "locks/").isEmpty)
                try store.delete("config")
                #expect(try !store.exists("config"))
                // The objects are files of the gateway's bucket folder.
                #expect(FileManager.default.fileExists(atPath: root + "/repo/chunks/keys"))
            }
        })
        await gateway.stop()
        try result.get()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
