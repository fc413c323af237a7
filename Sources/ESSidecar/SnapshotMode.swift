import Foundation
import S3Client
import SidecarProto

/// The REST calls snapshot mode makes; `SearchEngine` is the real one, tests replay recorded bodies.
public protocol RESTTransport: Sendable {
    /// Sends a JSON request; returns the decoded JSON answer; throws `SearchError` on non-2xx.
    @discardableResult
    func call(_ method: String, _ path: String, body: [String: Any]?) throws -> Any
}

extension SearchEngine: RESTTransport {
    @discardableResult
    public func call(_ method: String, _ path: String, body: [String: Any]?) throws -> Any {
        try json(method, path, body: body)
    }
}

public struct SnapshotProgress: Sendable {
    public var phase: Automate_Sidecar_Es_ESPhase
    public var indices: [Automate_Sidecar_Es_ESIndexStatus]
    public var error: String
}

/// Snapshot mode, for real Elasticsearch/OpenSearch clusters: the documented `_snapshot` API with an
/// `s3` repository pointed at the gateway. The engine's s3 client (`s3.client.<name>.endpoint`,
/// `.protocol: http`, `.path_style_access: true`, and the gateway's keys in its keystore) is configured on
/// the cluster; the repository names the bucket, the client and `base_path`.
/// Written against the documented request/response shapes and tested with recorded bodies only: it has
/// not been run against a real cluster here.
public struct SnapshotMode: @unchecked Sendable {
    public var transport: any RESTTransport
    public var bucket: String
    public var clientName: String

    public init(transport: any RESTTransport, bucket: String, clientName: String) {
        self.transport = transport
        self.bucket = bucket
        self.clientName = clientName
    }

    public static func repositoryName(service: String) -> String { "automate-\(service)" }

    /// `PUT _snapshot/<repo>` of type s3; returns the repository name.
    @discardableResult
    public func createRepository(service: String) throws -> String {
        let repo = Self.repositoryName(service: service)
        try transport.call("PUT", "/_snapshot/\(uriEncode(repo))", body: [
            "type": "s3",
            "settings": [
                "bucket": bucket,
                "base_path": "automate-elasticsearch-data/\(service)",
                "client": clientName,
                "compress": true,
            ] as [String: Any],
        ])
        return repo
    }

    public func deleteRepository(service: String) throws {
        try transport.call("DELETE", "/_snapshot/\(uriEncode(Self.repositoryName(service: service)))", body: nil)
    }

    /// `PUT _snapshot/<repo>/<snapshot>?wait_for_completion=false`.
    public func createSnapshot(service: String, snapshot: String, indices: [String]) throws {
        let repo = Self.repositoryName(service: service)
        try transport.call("PUT", "/_snapshot/\(uriEncode(repo))/\(uriEncode(snapshot))?wait_for_completion=false", body: [
            "indices": indices.joined(separator: ","),
            "include_global_state": false,
            "ignore_unavailable": false,
            "partial": false,
        ])
    }

    /// Non-hidden index names of the cluster, sorted (`GET _cat/indices`).
    public func listIndices() throws -> [String] {
        let rows = try transport.call("GET", "/_cat/indices?format=json&h=index", body: nil) as? [[String: Any]] ?? []
        return rows.compactMap { $0["index"] as? String }.filter { !$0.hasPrefix(".") }.sorted()
    }

    /// `DELETE _snapshot/<repo>/<snapshot>`: removes a snapshot, and aborts it while the cluster is still
    /// taking it.
    public func deleteSnapshot(service: String, snapshot: String) throws {
        try transport.call("DELETE", "/_snapshot/\(uriEncode(Self.repositoryName(service: service)))/\(uriEncode(snapshot))", body: nil)
    }

    /// `GET _snapshot/<repo>/<snapshot>/_status`: state and shard progress per index.
    public func snapshotStatus(service: String, snapshot: String) throws -> SnapshotProgress {
        let r = try transport.call("GET", "/_snapshot/\(uriEncode(Self.repositoryName(service: service)))/\(uriEncode(snapshot))/_status", body: nil)
        return Self.parseSnapshotStatus(r)
    }

    public static func parseSnapshotStatus(_ json: Any) -> SnapshotProgress {
        let snap = ((json as? [String: Any])?["snapshots"] as? [[String: Any]])?.first ?? [:]
        let state = snap["state"] as? String ?? "UNKNOWN"
        var indices: [Automate_Sidecar_Es_ESIndexStatus] = []
        for (name, value) in (snap["indices"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
            let stats = (value as? [String: Any])?["shards_stats"] as? [String: Any] ?? [:]
            var s = Automate_Sidecar_Es_ESIndexStatus()
            s.index = name
            s.shardsDone = (stats["done"] as? NSNumber)?.int64Value ?? 0
            s.shardsTotal = (stats["total"] as? NSNumber)?.int64Value ?? 0
            let failed = (stats["failed"] as? NSNumber)?.int64Value ?? 0
            s.phase = failed > 0 ? .failed : (s.shardsTotal > 0 && s.shardsDone == s.shardsTotal ? .completed : .running)
            indices.append(s)
        }
        let phase: Automate_Sidecar_Es_ESPhase
        switch state {
        case "SUCCESS": phase = .completed
        case "FAILED", "PARTIAL", "ABORTED": phase = .failed
        default: phase = .running  // INIT, STARTED, IN_PROGRESS
        }
        let failedIndices = indices.filter { $0.phase == .failed }.map(\.index)
        return SnapshotProgress(phase: phase, indices: indices,
                                error: phase == .failed ? "snapshot state \(state)" + (failedIndices.isEmpty ? "" : "; failed shards in \(failedIndices.joined(separator: ", "))") : "")
    }

    /// Closes existing indices of the same names (a restore requires closed or absent indices), then
    /// `POST _snapshot/<repo>/<snapshot>/_restore?wait_for_completion=false`.
    public func restore(service: String, snapshot: String, indices: [String]) throws {
        for index in indices {
            do {
                try transport.call("POST", "/\(uriEncode(index))/_close", body: nil)
            } catch let e as SearchError where e.status == 404 {
                // absent: restored fresh
            }
        }
        var body: [String: Any] = ["include_global_state": false, "include_aliases": true]
        if !indices.isEmpty { body["indices"] = indices.joined(separator: ",") }
        try transport.call("POST", "/_snapshot/\(uriEncode(Self.repositoryName(service: service)))/\(uriEncode(snapshot))/_restore?wait_for_completion=false", body: body)
    }

    /// `DELETE <indices>`: the documented way to stop a restore in progress (the cancel-tasks API cannot);
    /// indices already gone are fine.
    public func deleteIndices(_ indices: [String]) throws {
        guard !indices.isEmpty else { return }
        do {
            try transport.call("DELETE", "/\(indices.map { uriEncode($0) }.joined(separator: ","))", body: nil)
        } catch let e as SearchError where e.status == 404 {}
    }

    /// `GET <indices>/_recovery`: restore progress per index (shards in stage DONE / all snapshot-type shards).
    public func restoreStatus(indices: [String]) throws -> SnapshotProgress {
        let path = indices.isEmpty ? "/_recovery" : "/\(indices.map { uriEncode($0) }.joined(separator: ","))/_recovery"
        return Self.parseRecovery(try transport.call("GET", path, body: nil))
    }

    public static func parseRecovery(_ json: Any) -> SnapshotProgress {
        var indices: [Automate_Sidecar_Es_ESIndexStatus] = []
        for (name, value) in ((json as? [String: Any]) ?? [:]).sorted(by: { $0.key < $1.key }) {
            let shards = ((value as? [String: Any])?["shards"] as? [[String: Any]] ?? []).filter { ($0["type"] as? String) == "SNAPSHOT" }
            var s = Automate_Sidecar_Es_ESIndexStatus()
            s.index = name
            s.shardsTotal = Int64(shards.count)
            s.shardsDone = Int64(shards.filter { ($0["stage"] as? String) == "DONE" }.count)
            s.phase = s.shardsTotal > 0 && s.shardsDone == s.shardsTotal ? .completed : .running
            indices.append(s)
        }
        let done = !indices.isEmpty && indices.allSatisfy { $0.phase == .completed }
        return SnapshotProgress(phase: done ? .completed : .running, indices: indices, error: "")
    }
}
