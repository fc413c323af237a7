import ESSidecar
import Foundation
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
}
