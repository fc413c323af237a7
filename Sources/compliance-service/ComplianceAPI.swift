import AutomateRPC
import BackupRepository
import DomainAPI
import ESSidecar
import Foundation
import Operations
import S3Client
import ServiceKit

/// The compliance API: reports (PostgreSQL, indexed in the search engine) and profiles (files).
struct ComplianceAPI: Sendable {
    let database: ServiceDatabase
    /// Refuses calls while a restore replaces the data.
    let kit: BackupKit
    let search: SearchEngine
    let profilesDirectory: String
    let index: String
    static let index = "compliance-reports"

    /// Creates the search index with its mappings when it is missing.
    func prepareIndex() async throws {
        let search = self.search, index = self.index
        try await runBlocking(observingCancellation: false) { _ in
            guard try !search.indexExists(index) else { return }
            try search.json("PUT", "/\(index)", body: [
                "mappings": ["properties": [
                    "node": ["type": "keyword"], "status": ["type": "keyword"], "summary": ["type": "text"],
                    "created_at_unix_ms": ["type": "long"],
                ]],
            ], allow: [400])
        }
    }

    func register(on server: RPCServer) {
        server.register(ComplianceService.addReport) { req, _ in
            try await kit.requireReady()
            guard !req.node.isEmpty else { throw RPCError(.invalidArgument, "node is empty") }
            guard ["passed", "failed", "skipped"].contains(req.status) else {
                throw RPCError(.invalidArgument, "status \"\(req.status)\" is not passed, failed or skipped")
            }
            let rows = try await database.query(
                "INSERT INTO reports (node, status, summary) VALUES ($1, $2, $3) RETURNING id, (extract(epoch FROM created_at) * 1000)::bigint",
                [req.node, req.status, req.summary])
            var report = Automate_Compliance_V1_Report()
            report.id = Int64(rows.first?[0] ?? "") ?? 0
            report.node = req.node; report.status = req.status; report.summary = req.summary
            report.createdAtUnixMs = Int64(rows.first?[1] ?? "") ?? 0
            let search = self.search, index = self.index, doc: [String: Any] = [
                "node": report.node, "status": report.status, "summary": report.summary, "created_at_unix_ms": report.createdAtUnixMs,
            ]
            let id = report.id
            let body = try JSONSerialization.data(withJSONObject: doc)
            try await runBlocking(observingCancellation: false) { _ in
                let object = try JSONSerialization.jsonObject(with: body)
                try search.json("PUT", "/\(index)/_doc/\(id)?refresh=true", body: object)
            }
            return report
        }
        server.register(ComplianceService.listReports) { _, _ in
            try await kit.requireReady()
            let rows = try await database.query(
                "SELECT id, node, status, summary, (extract(epoch FROM created_at) * 1000)::bigint FROM reports ORDER BY id")
            var r = Automate_Compliance_V1_ListReportsResponse()
            r.reports = rows.map { row in
                var report = Automate_Compliance_V1_Report()
                report.id = Int64(row[0] ?? "") ?? 0
                report.node = row[1] ?? ""; report.status = row[2] ?? ""; report.summary = row[3] ?? ""
                report.createdAtUnixMs = Int64(row[4] ?? "") ?? 0
                return report
            }
            return r
        }
        server.register(ComplianceService.searchReports) { req, _ in
            try await kit.requireReady()
            let search = self.search, index = self.index, query = req.query
            // The JSON stays on the thread that parsed it; only the reports (Sendable) come back.
            let reports: [Automate_Compliance_V1_Report] = try await runBlocking(observingCancellation: false) { _ in
                let body: [String: Any] = ["size": 1000, "query": query.isEmpty ? ["match_all": [String: Any]()] : ["match": ["summary": query]]]
                let answer = try search.json("POST", "/\(index)/_search", body: body) as? [String: Any]
                let outer = answer?["hits"] as? [String: Any]
                let list = outer?["hits"] as? [[String: Any]] ?? []
                return list.map { hit in
                    let source = hit["_source"] as? [String: Any] ?? [:]
                    var report = Automate_Compliance_V1_Report()
                    report.id = Int64("\(hit["_id"] ?? "0")") ?? 0
                    report.node = source["node"] as? String ?? ""
                    report.status = source["status"] as? String ?? ""
                    report.summary = source["summary"] as? String ?? ""
                    report.createdAtUnixMs = (source["created_at_unix_ms"] as? NSNumber)?.int64Value ?? 0
                    return report
                }
            }
            var r = Automate_Compliance_V1_ListReportsResponse()
            r.reports = reports.sorted { $0.id < $1.id }
            return r
        }
        server.register(ComplianceService.uploadProfile) { req, _ in
            try await kit.requireReady()
            let name = req.name
            guard !name.isEmpty, name.count <= 200, !name.hasPrefix("."), !name.contains("/") else {
                throw RPCError(.invalidArgument, "profile name \"\(name)\" must be a plain file name (no '/', not starting with '.')")
            }
            let path = profilesDirectory + "/" + name
            let temp = profilesDirectory + "/.upload-\(UUID().uuidString)"
            guard FileManager.default.createFile(atPath: temp, contents: req.content) else {
                throw RPCError(.internal, "cannot write \(temp)")
            }
            guard rename(temp, path) == 0 else {
                unlink(temp)
                throw RPCError(.internal, "cannot rename into \(path): \(String(cString: strerror(errno)))")
            }
            return Self.profile(name: name, bytes: req.content)
        }
        server.register(ComplianceService.listProfiles) { _, _ in
            try await kit.requireReady()
            var r = Automate_Compliance_V1_ListProfilesResponse()
            let names = (try? FileManager.default.contentsOfDirectory(atPath: profilesDirectory)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") {
                let bytes = FileManager.default.contents(atPath: profilesDirectory + "/" + name) ?? Data()
                r.profiles.append(Self.profile(name: name, bytes: bytes))
            }
            return r
        }
    }

    static func profile(name: String, bytes: Data) -> Automate_Compliance_V1_Profile {
        var p = Automate_Compliance_V1_Profile()
        p.name = name
        p.size = UInt64(bytes.count)
        p.sha256 = Checksum.sha256(bytes)
        return p
    }
}
