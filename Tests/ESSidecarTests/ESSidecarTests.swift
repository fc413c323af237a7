import AutomateRPC
import ESSidecar
import Foundation
import Logging
import Operations
import S3Client
import SidecarProto
import SidecarTestSupport
import XCTest

/// Export mode end to end through the RPC socket: osmem-server as the engine, moto_server as S3.
final class ESSidecarTests: XCTestCase {
    nonisolated(unsafe) static var moto: MotoServer?
    nonisolated(unsafe) static var osmem: OsmemServer?
    nonisolated(unsafe) static var server: RPCServer?
    nonisolated(unsafe) static var socketDir: String?
    nonisolated(unsafe) static var setupError: String?
    static let bucket = "backups"

    override class func setUp() {
        super.setUp()
        do {
            moto = try MotoServer()
            osmem = try OsmemServer()
            socketDir = try Fixture.makeTempDir("essidecar")
        } catch {
            setupError = "\(error)"
        }
    }

    override class func tearDown() {
        if let server { let sem = DispatchSemaphore(value: 0); Task { await server.shutdown(); sem.signal() }; sem.wait() }
        osmem?.stop()
        moto?.stop()
        if let socketDir { try? FileManager.default.removeItem(atPath: socketDir) }
        super.tearDown()
    }

    func fixtures() async throws -> (SearchEngine, S3Client, RPCClient) {
        guard let osmem = Self.osmem, let moto = Self.moto, let dir = Self.socketDir else {
            XCTFail("fixtures did not start (\(Self.setupError ?? "?")): run scripts/install.sh --deps")
            throw XCTSkip("no fixtures")
        }
        // S3CLIENT_TEST_ENDPOINT (+ _KEY, _SECRET) runs against another S3 API (the backup-gateway).
        let env = ProcessInfo.processInfo.environment
        let s3 = env["S3CLIENT_TEST_ENDPOINT"].map {
            S3Client(endpoint: $0, credentials: S3Credentials(accessKeyID: env["S3CLIENT_TEST_KEY"] ?? "test", secretAccessKey: env["S3CLIENT_TEST_SECRET"] ?? "test"))
        } ?? S3Client(endpoint: moto.endpoint, credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"))
        let socket = dir + "/es-sidecar-service.sock"
        if Self.server == nil {
            var config = ESSidecarConfig(socketPath: socket, searchURL: osmem.url, mode: .export, s3: s3, bucket: Self.bucket)
            config.partSize = 5 << 20
            let sidecar = ESSidecar(config: config, logger: Logger(label: "test.es-sidecar"))
            // The tests connect, then fill indices for a while before their first call: on a loaded 2-core
            // machine that can pass the default 30-s idle timeout, and the server would hang up first.
            var rpc = RPCServer.Configuration(socketPath: socket)
            rpc.idleTimeout = .seconds(600)
            let server = RPCServer(configuration: rpc, logger: Logger(label: "test.rpc"))
            sidecar.register(on: server)
            try await server.start()
            Self.server = server
            let client = try await RPCClient.connect(socketPath: socket)
            var req = Automate_Sidecar_Es_ESCreateRepoRequest()
            req.service = "search-service"
            _ = try await client.unary("CreateRepo", req, as: Automate_Sidecar_Es_ESCreateRepoResponse.self)
            await client.close()
        }
        return (SearchEngine(url: osmem.url), s3, try await RPCClient.connect(socketPath: socket))
    }

    /// Creates `index` with explicit mappings and `count` varied documents (non-ASCII, nested, arrays).
    func makeIndex(_ engine: SearchEngine, _ index: String, count: Int) throws {
        try engine.json("PUT", "/\(index)", body: [
            "settings": ["number_of_shards": 1, "number_of_replicas": 0],
            "mappings": ["properties": [
                "title": ["type": "text"], "tag": ["type": "keyword"], "n": ["type": "integer"],
                "price": ["type": "double"], "ok": ["type": "boolean"], "at": ["type": "date"],
            ]],
        ])
        var batch = ""
        for i in 0..<count {
            let doc: [String: Any] = [
                "title": "Dokument №\(i) — ünïcödé 東京 \(i % 7 == 0 ? "🚀" : "")",
                "tag": "t\(i % 13)", "n": i, "price": Double(i) / 4.0, "ok": i % 2 == 0,
                "at": "2026-03-0\(1 + i % 9)T10:00:00Z",
                "nested": ["a": [1, 2, i], "b": ["x": "y\(i)"]],
                "list": ["α", "β", "\(i)"],
            ]
            let src = String(decoding: try JSONSerialization.data(withJSONObject: doc), as: UTF8.self)
            batch += "{\"index\":{\"_index\":\"\(index)\",\"_id\":\"doc-\(i)\"}}\n\(src)\n"
            if (i + 1) % 1000 == 0 || i == count - 1 {
                let (status, body) = try engine.raw("POST", "/_bulk?refresh=true", body: Array(batch.utf8), contentType: "application/x-ndjson")
                XCTAssertEqual(status, 200, String(decoding: body.prefix(300), as: UTF8.self))
                batch = ""
            }
        }
    }

    /// Every document: id → source (parsed), paged.
    func allDocs(_ engine: SearchEngine, _ index: String) throws -> [String: NSDictionary] {
        var out: [String: NSDictionary] = [:]
        var after: String? = nil
        while true {
            var q: [String: Any] = ["size": 500, "sort": [["_id": "asc"]]]
            if let after { q["search_after"] = [after] }
            let r = try engine.json("POST", "/\(index)/_search", body: q) as? [String: Any]
            let hits = ((r?["hits"] as? [String: Any])?["hits"] as? [[String: Any]]) ?? []
            if hits.isEmpty { break }
            for h in hits { out[h["_id"] as! String] = h["_source"] as? NSDictionary }
            after = hits.last?["_id"] as? String
        }
        return out
    }

    /// Follows the operation through WatchStatus (every change pushed, no polling) to its end.
    func wait(_ client: RPCClient, _ op: String) async throws -> ESStatus {
        try await watchAll(client, op).last!
    }

    /// Every status WatchStatus sends for `op`, until the stream ends (which must be at the operation's end).
    func watchAll(_ client: RPCClient, _ op: String) async throws -> [ESStatus] {
        var r = Automate_Sidecar_Es_ESStatusRequest()
        r.operationID = op
        var all: [ESStatus] = []
        for try await s in client.serverStream("WatchStatus", r, as: ESStatus.self, timeout: .seconds(300)) { all.append(s) }
        guard let last = all.last, [.completed, .failed, .cancelled].contains(last.phase) else {
            throw RPCError(.deadlineExceeded, "the watch of \(op) ended before the operation: \(String(describing: all.last))")
        }
        return all
    }

    func startSnapshot(_ client: RPCClient, _ name: String, _ indices: [String]) async throws -> String {
        var req = Automate_Sidecar_Es_ESCreateSnapshotRequest()
        req.service = "search-service"
        req.snapshot = name
        req.indices = indices
        return try await client.unary("CreateSnapshot", req, as: Automate_Sidecar_Es_ESOperation.self).operationID
    }

    func snapshot(_ client: RPCClient, _ name: String, _ indices: [String]) async throws -> ESStatus {
        var req = Automate_Sidecar_Es_ESCreateSnapshotRequest()
        req.service = "search-service"
        req.snapshot = name
        req.indices = indices
        return try await wait(client, try await client.unary("CreateSnapshot", req, as: Automate_Sidecar_Es_ESOperation.self).operationID)
    }

    func restore(_ client: RPCClient, _ name: String, replace: Bool = false) async throws -> ESStatus {
        var req = Automate_Sidecar_Es_ESRestoreSnapshotRequest()
        req.service = "search-service"
        req.snapshot = name
        req.replaceExisting = replace
        return try await wait(client, try await client.unary("RestoreSnapshot", req, as: Automate_Sidecar_Es_ESOperation.self).operationID)
    }

    func testExportDeleteRestoreEveryDocumentEqual() async throws {
        let (engine, s3, client) = try await fixtures()
        try makeIndex(engine, "products", count: 5000)
        try makeIndex(engine, "reviews", count: 1500)
        let before = [try allDocs(engine, "products"), try allDocs(engine, "reviews")]
        XCTAssertEqual(before[0].count, 5000)
        let mappingBefore = try engine.definition("products").mappings as NSDictionary

        let s = try await snapshot(client, "20260301100000", ["products", "rev*"])
        XCTAssertEqual(s.phase, .completed, s.error)
        XCTAssertEqual(s.indices.map(\.index), ["products", "reviews"])
        XCTAssertEqual(s.indices.map(\.docsDone), [5000, 1500])
        let objects = try await s3.listObjects(bucket: Self.bucket, prefix: "automate-elasticsearch-data/search-service/20260301100000/")
        XCTAssertEqual(Set(objects.map { ($0.key as NSString).lastPathComponent }), ["products.ndjson", "reviews.ndjson", "manifest.json"])

        try engine.json("DELETE", "/products")
        try engine.json("DELETE", "/reviews")
        let r = try await restore(client, "20260301100000")
        XCTAssertEqual(r.phase, .completed, r.error)
        XCTAssertTrue(r.shortTermDone && r.longTermDone)
        XCTAssertEqual(try allDocs(engine, "products"), before[0])
        XCTAssertEqual(try allDocs(engine, "reviews"), before[1])
        XCTAssertEqual(try engine.definition("products").mappings as NSDictionary, mappingBefore)

        // Restoring over existing indices needs replace_existing.
        do {
            _ = try await restore(client, "20260301100000")
            XCTFail("expected ALREADY_EXISTS")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .alreadyExists, e.message)
        }
        await client.close()
    }

    func testTruncatedOrAlteredObjectIsRefused() async throws {
        let (engine, s3, client) = try await fixtures()
        try makeIndex(engine, "orders", count: 2000)
        let s = try await snapshot(client, "20260301110000", ["orders"])
        XCTAssertEqual(s.phase, .completed, s.error)
        let key = "automate-elasticsearch-data/search-service/20260301110000/orders.ndjson"
        let original = try await s3.getObject(bucket: Self.bucket, key: key)
        try engine.json("DELETE", "/orders")

        // Truncated at a line boundary (still valid NDJSON, fewer documents): refused, nothing created.
        var cut = original.count / 2
        while original[cut - 1] != UInt8(ascii: "\n") { cut -= 1 }
        try await s3.putObject(bucket: Self.bucket, key: key, bytes: Array(original.prefix(cut)))
        let t = try await restore(client, "20260301110000")
        XCTAssertEqual(t.phase, .failed)
        XCTAssertTrue(t.error.contains("refusing"), t.error)
        XCTAssertFalse(try engine.indexExists("orders"))

        // Same length, one byte altered: refused.
        var altered = original
        altered[altered.count / 3] = UInt8(ascii: "Z")
        try await s3.putObject(bucket: Self.bucket, key: key, bytes: altered)
        let a = try await restore(client, "20260301110000")
        XCTAssertEqual(a.phase, .failed)
        XCTAssertFalse(try engine.indexExists("orders"))

        // Intact again: restores.
        try await s3.putObject(bucket: Self.bucket, key: key, bytes: original)
        let ok = try await restore(client, "20260301110000")
        XCTAssertEqual(ok.phase, .completed, ok.error)
        XCTAssertEqual(try engine.count("orders"), 2000)
        await client.close()
    }

    func testWatchStatusPushesEveryChangeInOrderAndEnds() async throws {
        let (engine, _, client) = try await fixtures()
        try makeIndex(engine, "watched", count: 6000)
        // The engine is shared by this class's tests (the local-save test saves every index): leave it small.
        defer { _ = try? engine.json("DELETE", "/watched") }
        let op = try await startSnapshot(client, "20260301120000", ["watched"])
        let all = try await watchAll(client, op)
        let docs = all.map { $0.indices.first?.docsDone ?? 0 }
        XCTAssertEqual(docs, docs.sorted(), "documents done never go back: \(docs)")
        XCTAssertEqual(all.last?.phase, .completed, all.last?.error ?? "")
        XCTAssertEqual(all.last?.indices.first?.docsDone, 6000)
        XCTAssertEqual(all.last?.indices.first?.sha256.count, 64)
        XCTAssertEqual(all.filter { $0.phase == .completed }.count, 1, "the stream ends after the end")
        XCTAssertGreaterThan(all.count, 1, "a running status, then the end")
        // A watch of an ended operation sends its end and ends.
        let late = try await watchAll(client, op)
        XCTAssertEqual(late.count, 1)
        XCTAssertEqual(late.first?.phase, .completed)
        await client.close()
    }

    /// Cancel during an export: the operation ends cancelled, its upload is aborted and nothing is left
    /// under the snapshot's prefix.
    func testCancelStopsAnExportAndLeavesNothing() async throws {
        let (engine, s3, setupClient) = try await fixtures()
        try makeIndex(engine, "large", count: 40000)
        defer { _ = try? engine.json("DELETE", "/large") }
        // Filling the index can outlast the server's idle timeout (30 s), which closes a connection that
        // sends nothing: call on a fresh one.
        await setupClient.close()
        let client = try await RPCClient.connect(socketPath: setupClient.socketPath)
        let op = try await startSnapshot(client, "20260301130000", ["large"])
        var r = Automate_Sidecar_Es_ESStatusRequest()
        r.operationID = op
        for try await s in client.serverStream("WatchStatus", r, as: ESStatus.self, timeout: .seconds(120)) {
            XCTAssertNotEqual(s.phase, .completed, "the export finished before it could be cancelled: make the index bigger")
            if (s.indices.first?.docsDone ?? 0) > 0 { break }
        }
        let s = try await client.unary("Cancel", r, as: ESStatus.self, timeout: .seconds(30))
        XCTAssertEqual(s.phase, .cancelled, s.error)
        XCTAssertEqual(s.indices.first?.phase, .cancelled)
        let later = try await client.unary("SnapshotStatus", r, as: ESStatus.self)
        XCTAssertEqual(later.phase, .cancelled)
        let prefix = "automate-elasticsearch-data/search-service/20260301130000/"
        let listed = try await s3.listObjects(bucket: Self.bucket, prefix: prefix)
        XCTAssertTrue(listed.isEmpty, "\(listed.map(\.key))")
        let open = try await runBlocking { _ in try s3.listMultipartUploadsSync(bucket: Self.bucket, prefix: prefix) }
        XCTAssertTrue(open.isEmpty, "multipart upload not aborted: \(open)")
        await client.close()
    }

    func testUnknownOperationIsNotFoundNamingTheSidecar() async throws {
        let (_, _, client) = try await fixtures()
        var r = Automate_Sidecar_Es_ESStatusRequest()
        r.operationID = "snapshot-20260101000000-0123456789ab"
        for method in ["SnapshotStatus", "Cancel", "WatchStatus"] {
            do {
                if method == "WatchStatus" {
                    for try await _ in client.serverStream(method, r, as: ESStatus.self) {
                        XCTFail("WatchStatus yielded a status for an unknown operation")
                    }
                } else {
                    _ = try await client.unary(method, r, as: ESStatus.self)
                }
                XCTFail("\(method): expected NOT_FOUND")
            } catch let e as RPCError {
                XCTAssertEqual(e.code, .notFound, "\(method): \(e)")
                XCTAssertTrue(e.message.contains("es-sidecar-service"), e.message)
                XCTAssertTrue(e.message.contains(r.operationID), e.message)
            }
        }
        await client.close()
    }

    func testLocalSaveSurvivesEngineRestart() async throws {
        let (engine, _, client) = try await fixtures()
        await client.close()
        try makeIndex(engine, "notes", count: 1200)
        let before = try allDocs(engine, "notes")
        let dir = try Fixture.makeTempDir("search-save")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let n = try LocalSearchSave(engine: engine, directory: dir).save()
        XCTAssertGreaterThanOrEqual(n, 1)
        // A second save replaces the first whole.
        try engine.json("POST", "/notes/_doc/added-later?refresh=true", body: ["title": "added after the first save"])
        _ = try LocalSearchSave(engine: engine, directory: dir).save()
        let generations = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("save-") }
        XCTAssertEqual(generations.count, 1)

        // A fresh engine (a restart of the in-memory server) loads the save.
        let fresh = try OsmemServer()
        defer { fresh.stop() }
        let freshEngine = SearchEngine(url: fresh.url)
        let loaded = try LocalSearchSave(engine: freshEngine, directory: dir).loadIfEngineEmpty()
        XCTAssertEqual(loaded, n)
        var after = try allDocs(freshEngine, "notes")
        XCTAssertNotNil(after.removeValue(forKey: "added-later"))
        XCTAssertEqual(after, before)
        XCTAssertEqual(try LocalSearchSave(engine: freshEngine, directory: dir).loadIfEngineEmpty(), 0, "not loaded twice")
    }
}
