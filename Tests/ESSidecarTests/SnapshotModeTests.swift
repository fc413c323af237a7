import ESSidecar
import Foundation
import Logging
import S3Client
import SidecarProto
import SidecarTestSupport
import XCTest

/// Snapshot mode against recorded request/response bodies (the shapes documented by Elasticsearch 8 and
/// OpenSearch 2 for `_snapshot`, `_status`, `_restore` and `_recovery`). Not run against a real cluster.
final class SnapshotModeTests: XCTestCase {
    final class Recorded: RESTTransport, @unchecked Sendable {
        struct Exchange { var method: String; var path: String; var response: String; var status: Int = 200 }
        var script: [Exchange]
        var sent: [(String, String, [String: Any]?)] = []
        init(_ script: [Exchange]) { self.script = script }

        func call(_ method: String, _ path: String, body: [String: Any]?) throws -> Any {
            sent.append((method, path, body))
            guard !script.isEmpty else { throw SearchError(status: 500, message: "unexpected \(method) \(path)") }
            let next = script.removeFirst()
            XCTAssertEqual("\(method) \(path)", "\(next.method) \(next.path)")
            if next.status >= 300 { throw SearchError(status: next.status, message: next.response) }
            return try JSONSerialization.jsonObject(with: Data(next.response.utf8), options: [.fragmentsAllowed])
        }
    }

    func testRepositoryAndSnapshotRequests() throws {
        let t = Recorded([
            .init(method: "PUT", path: "/_snapshot/automate-compliance-service", response: #"{"acknowledged":true}"#),
            .init(method: "PUT", path: "/_snapshot/automate-compliance-service/20260302081223?wait_for_completion=false", response: #"{"accepted":true}"#),
            .init(method: "DELETE", path: "/_snapshot/automate-compliance-service/20260302081223", response: #"{"acknowledged":true}"#),
            .init(method: "DELETE", path: "/_snapshot/automate-compliance-service", response: #"{"acknowledged":true}"#),
        ])
        let m = SnapshotMode(transport: t, bucket: "automate-backups", clientName: "automate")
        XCTAssertEqual(try m.createRepository(service: "compliance-service"), "automate-compliance-service")
        let repo = try XCTUnwrap(t.sent[0].2)
        XCTAssertEqual(repo["type"] as? String, "s3")
        let settings = try XCTUnwrap(repo["settings"] as? [String: Any])
        XCTAssertEqual(settings["bucket"] as? String, "automate-backups")
        XCTAssertEqual(settings["base_path"] as? String, "automate-elasticsearch-data/compliance-service")
        XCTAssertEqual(settings["client"] as? String, "automate")

        try m.createSnapshot(service: "compliance-service", snapshot: "20260302081223", indices: ["comp-reports", "comp-runs"])
        let snap = try XCTUnwrap(t.sent[1].2)
        XCTAssertEqual(snap["indices"] as? String, "comp-reports,comp-runs")
        XCTAssertEqual(snap["include_global_state"] as? Bool, false)
        try m.deleteSnapshot(service: "compliance-service", snapshot: "20260302081223")
        try m.deleteRepository(service: "compliance-service")
        XCTAssertTrue(t.script.isEmpty)
    }

    static let statusInProgress = #"""
    {"snapshots":[{"snapshot":"20260302081223","repository":"automate-compliance-service","uuid":"x1","state":"STARTED",
      "include_global_state":false,"shards_stats":{"initializing":0,"started":1,"finalizing":0,"done":2,"failed":0,"total":3},
      "stats":{"incremental":{"file_count":10,"size_in_bytes":1000},"total":{"file_count":10,"size_in_bytes":1000},"start_time_in_millis":1,"time_in_millis":5},
      "indices":{"comp-runs":{"shards_stats":{"initializing":0,"started":0,"finalizing":0,"done":1,"failed":0,"total":1},"stats":{},"shards":{}},
                 "comp-reports":{"shards_stats":{"initializing":0,"started":1,"finalizing":0,"done":1,"failed":0,"total":2},"stats":{},"shards":{}}}}]}
    """#
    static let statusDone = #"""
    {"snapshots":[{"snapshot":"20260302081223","repository":"automate-compliance-service","state":"SUCCESS",
      "shards_stats":{"done":3,"failed":0,"total":3},
      "indices":{"comp-runs":{"shards_stats":{"done":1,"failed":0,"total":1}},"comp-reports":{"shards_stats":{"done":2,"failed":0,"total":2}}}}]}
    """#
    static let statusFailed = #"""
    {"snapshots":[{"snapshot":"s","repository":"r","state":"PARTIAL","shards_stats":{"done":1,"failed":1,"total":2},
      "indices":{"a":{"shards_stats":{"done":1,"failed":0,"total":1}},"b":{"shards_stats":{"done":0,"failed":1,"total":1}}}}]}
    """#

    func testSnapshotStatusParsing() throws {
        let running = SnapshotMode.parseSnapshotStatus(try JSONSerialization.jsonObject(with: Data(Self.statusInProgress.utf8)))
        XCTAssertEqual(running.phase, .running)
        XCTAssertEqual(running.indices.map(\.index), ["comp-reports", "comp-runs"])
        XCTAssertEqual(running.indices.map(\.shardsDone), [1, 1])
        XCTAssertEqual(running.indices.map(\.shardsTotal), [2, 1])
        XCTAssertEqual(running.indices.map(\.phase), [.running, .completed])

        let done = SnapshotMode.parseSnapshotStatus(try JSONSerialization.jsonObject(with: Data(Self.statusDone.utf8)))
        XCTAssertEqual(done.phase, .completed)
        XCTAssertTrue(done.indices.allSatisfy { $0.phase == .completed })

        let failed = SnapshotMode.parseSnapshotStatus(try JSONSerialization.jsonObject(with: Data(Self.statusFailed.utf8)))
        XCTAssertEqual(failed.phase, .failed)
        XCTAssertTrue(failed.error.contains("PARTIAL") && failed.error.contains("b"), failed.error)
    }

    func testRestoreClosesExistingIndicesThenRestoresAndTracksRecovery() throws {
        let t = Recorded([
            .init(method: "POST", path: "/comp-reports/_close", response: #"{"acknowledged":true,"shards_acknowledged":true,"indices":{"comp-reports":{"closed":true}}}"#),
            .init(method: "POST", path: "/comp-runs/_close", response: #"{"error":{"type":"index_not_found_exception","reason":"no such index [comp-runs]"},"status":404}"#, status: 404),
            .init(method: "POST", path: "/_snapshot/automate-compliance-service/20260302081223/_restore?wait_for_completion=false", response: #"{"accepted":true}"#),
            .init(method: "GET", path: "/comp-reports,comp-runs/_recovery", response: #"""
              {"comp-reports":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"DONE"},{"id":1,"type":"SNAPSHOT","stage":"INDEX"}]},
               "comp-runs":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"DONE"}]}}
              """#),
            .init(method: "GET", path: "/comp-reports,comp-runs/_recovery", response: #"""
              {"comp-reports":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"DONE"},{"id":1,"type":"SNAPSHOT","stage":"DONE"}]},
               "comp-runs":{"shards":[{"id":0,"type":"SNAPSHOT","stage":"DONE"}]}}
              """#),
        ])
        let m = SnapshotMode(transport: t, bucket: "b", clientName: "automate")
        try m.restore(service: "compliance-service", snapshot: "20260302081223", indices: ["comp-reports", "comp-runs"])
        let body = try XCTUnwrap(t.sent[2].2)
        XCTAssertEqual(body["indices"] as? String, "comp-reports,comp-runs")
        XCTAssertEqual(body["include_global_state"] as? Bool, false)
        let p1 = try m.restoreStatus(indices: ["comp-reports", "comp-runs"])
        XCTAssertEqual(p1.phase, .running)
        XCTAssertEqual(p1.indices.first?.shardsDone, 1)
        XCTAssertEqual(p1.indices.first?.shardsTotal, 2)
        let p2 = try m.restoreStatus(indices: ["comp-reports", "comp-runs"])
        XCTAssertEqual(p2.phase, .completed)
        XCTAssertTrue(t.script.isEmpty)
    }

    /// A cluster that answers by request (not by script order): a snapshot or restore that never ends, so
    /// that only Cancel can stop it. Every request is recorded, under a lock.
    final class Endless: RESTTransport, @unchecked Sendable {
        private let lock = NSLock()
        private var log: [String] = []
        var sent: [String] { lock.withLock { log } }

        func call(_ method: String, _ path: String, body: [String: Any]?) throws -> Any {
            lock.withLock { log.append("\(method) \(path)") }
            switch (method, path) {
            case ("GET", "/_cat/indices?format=json&h=index"): return [["index": "comp-reports"], ["index": "comp-runs"]]
            case ("GET", _) where path.hasSuffix("/_status"):
                return try JSONSerialization.jsonObject(with: Data(SnapshotModeTests.statusInProgress.utf8))
            case ("GET", _) where path.hasSuffix("/_recovery"):
                return ["comp-reports": ["shards": [["type": "SNAPSHOT", "stage": "DONE"]]], "comp-runs": ["shards": [["type": "SNAPSHOT", "stage": "INDEX"]]]]
            default: return ["acknowledged": true]
            }
        }

        /// Waits (at most 10 s) until `request` was sent.
        func waitFor(_ request: String) async throws {
            for _ in 0..<200 where !sent.contains(request) { try await Task.sleep(for: .milliseconds(50)) }
            XCTAssertTrue(sent.contains(request), "never sent \(request): \(sent)")
        }
    }

    func snapshotSidecar(_ t: Endless) -> ESSidecar {
        let s3 = S3Client(endpoint: "http://127.0.0.1:1", credentials: S3Credentials(accessKeyID: "unused", secretAccessKey: "unused"))
        let config = ESSidecarConfig(socketPath: "/nonexistent", searchURL: "http://127.0.0.1:1", mode: .snapshot, s3: s3, bucket: "b")
        return ESSidecar(config: config, logger: Logger(label: "test.es-sidecar"), transport: t)
    }

    /// Cancel of a snapshot the cluster is taking deletes it (a DELETE aborts a running snapshot).
    func testCancelDeletesTheSnapshotInProgress() async throws {
        let t = Endless()
        let sidecar = snapshotSidecar(t)
        var req = Automate_Sidecar_Es_ESCreateSnapshotRequest()
        req.service = "compliance-service"
        req.snapshot = "20260302081223"
        let op = try await sidecar.startSnapshot(req)
        try await t.waitFor("GET /_snapshot/automate-compliance-service/20260302081223/_status")
        let s = try await sidecar.cancel(op)
        XCTAssertEqual(s.phase, .cancelled, s.error)
        XCTAssertEqual(t.sent.first, "GET /_cat/indices?format=json&h=index")
        XCTAssertTrue(t.sent.contains("PUT /_snapshot/automate-compliance-service/20260302081223?wait_for_completion=false"), "\(t.sent)")
        XCTAssertEqual(t.sent.last, "DELETE /_snapshot/automate-compliance-service/20260302081223")
    }

    /// Cancel of a restore deletes the indices still being restored (the documented way to stop a
    /// restore); an index already recovered stays.
    func testCancelStopsARestoreByDeletingIndicesStillRecovering() async throws {
        let t = Endless()
        let sidecar = snapshotSidecar(t)
        var req = Automate_Sidecar_Es_ESRestoreSnapshotRequest()
        req.service = "compliance-service"
        req.snapshot = "20260302081223"
        req.indices = ["comp-reports", "comp-runs"]
        let op = try await sidecar.startRestore(req)
        try await t.waitFor("GET /comp-reports,comp-runs/_recovery")
        let s = try await sidecar.cancel(op)
        XCTAssertEqual(s.phase, .cancelled, s.error)
        XCTAssertTrue(t.sent.contains("POST /_snapshot/automate-compliance-service/20260302081223/_restore?wait_for_completion=false"), "\(t.sent)")
        XCTAssertEqual(t.sent.last, "DELETE /comp-runs")
    }
}
