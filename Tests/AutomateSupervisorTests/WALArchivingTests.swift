import AutomateRPC
import AutomateSupervisor
import BackupRepository
import Foundation
import Testing

/// Continuous WAL archiving on the real stack: PostgreSQL's archive_command hands each finished segment
/// to the pg-sidecar (automate-wal), which stores it in the repository through the gateway.
@Suite("WAL archiving", .serialized)
struct WALArchivingTests {
    /// One value from the stack's PostgreSQL.
    static func query(_ stack: TestStack, _ sql: String) async throws -> String {
        let r = try await stack.shell("automate psql teams_service -- -AtXq -c \"\(sql)\"")
        guard r.succeeded else { throw TestFailure("psql \(sql): \(r.output)\(r.error)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes rows holding `marker`, switches to a new segment and returns the finished segment's name.
    static func writeAndSwitch(_ stack: TestStack, marker: String) async throws -> String {
        _ = try await query(stack, "CREATE TABLE IF NOT EXISTS wal_probe (id serial PRIMARY KEY, note text); INSERT INTO wal_probe (note) SELECT '\(marker)' || g FROM generate_series(1, 200) g")
        return try await query(stack, "SELECT pg_walfile_name(pg_switch_wal())")
    }

    /// Waits (polling pg_stat_archiver, with a deadline) until `segment` or a later one is archived.
    static func waitArchived(_ stack: TestStack, _ segment: String, within seconds: Double = 90) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            last = try await query(stack, "SELECT coalesce(last_archived_wal, '') || ' ' || failed_count FROM pg_stat_archiver")
            if let archived = last.split(separator: " ").first, String(archived) >= segment { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestFailure("\(segment) was not archived within \(seconds) s; pg_stat_archiver: \(last)")
    }

    /// The running server's system identifier (its archive's folder).
    static func cluster(_ stack: TestStack) async throws -> String {
        try await query(stack, "SELECT system_identifier FROM pg_control_system()")
    }

    /// The record of an archived file, read from the repository folder.
    static func record(_ stack: TestStack, _ name: String) async throws -> WALFileRecord {
        let path = stack.home.backupsDirectory + "/" + WALArchive.recordKey(name, cluster: try await cluster(stack))
        guard let data = FileManager.default.contents(atPath: path) else { throw TestFailure("no record \(path)") }
        return try WALFileRecord.decode(Array(data), key: path)
    }

    @Test("a backup takes a base backup; segments reach the repository encrypted; with the gateway down PostgreSQL retries and loses nothing; verify names a missing segment")
    func archivingThroughTheGateway() async throws {
        let stack = try TestStack(name: "wal-archive")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack(repositoryFormat: "chunked", archiving: true)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        // The first backup records the repository's format (chunked) and takes a base backup of the cluster.
        let id = try await stack.createBackup()
        let basePath = stack.home.backupsDirectory + "/\(id)/automate-postgresql/pg_base/metadata.json"
        let base = try #require(FileManager.default.contents(atPath: basePath).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] })
        #expect(base["cluster"] as? String == (try await Self.cluster(stack)))
        #expect(base["format"] as? String == "tar+chunks" && (base["tar_bytes"] as? Int ?? 0) > 10 << 20, "\(base)")
        let startWAL = try #require(base["start_wal"] as? String)
        #expect(WALSegment(name: startWAL) != nil && (base["stop_wal"] as? String ?? "") >= startWAL)
        // pg_basebackup ended once the server archived the backup's last segment.
        #expect(try await Self.record(stack, base["stop_wal"] as? String ?? "").size == 16 << 20)
        let listed = try String(contentsOfFile: stack.home.backupsDirectory + "/\(id)/automate-postgresql/metadata.json", encoding: .utf8)
        #expect(listed.replacingOccurrences(of: "\\/", with: "/").contains("pg_base/base.tar") && listed.contains("pg_basebackup_tar_chunked"), "\(listed)")

        let first = try await Self.writeAndSwitch(stack, marker: "wal-marker-one-")
        try await Self.waitArchived(stack, first)
        let record = try await Self.record(stack, first)
        #expect(record.size == 16 << 20 && record.chunks != nil && record.object == nil, "\(record)")
        // Encrypted: the rows' text is in the segment, not in the repository's bytes.
        let clear = try await stack.shell("grep -rlF 'wal-marker-one-' '\(stack.home.backupsDirectory)' || true")
        #expect(clear.output.isEmpty, "WAL in clear: \(clear.output)")
        // Fetched back (restore_command's path) whole and checked: the real segment, with the rows.
        let fetched = stack.root + "/fetched-segment"
        let socket = "--socket '\(stack.home.runDirectory)/pg-sidecar-service.sock'"
        let fetch = try await stack.shell("automate-wal fetch \(socket) '\(first)' '\(fetched)'")
        #expect(fetch.succeeded, "\(fetch.error)")
        let bytes = try #require(FileManager.default.contents(atPath: fetched))
        #expect(bytes.count == 16 << 20 && bytes.range(of: Data("wal-marker-one-".utf8)) != nil)
        // Both ways through the sidecar's hand-off folder (nothing went through the socket), which they left empty.
        let handoff = stack.home.dataDirectory + "/pg-sidecar-service/wal-handoff"
        #expect(try FileManager.default.contentsOfDirectory(atPath: handoff) == [], "left in \(handoff)")
        let serverLog = try String(contentsOfFile: stack.home.logPath(service: "automate-postgresql"), encoding: .utf8)
        #expect(!serverLog.contains("through the socket"), "\(serverLog.suffix(2000))")
        let absent = try await stack.shell("automate-wal fetch \(socket) 00000001000000FF000000FF '\(stack.root)/none'; echo \"exit $?\"")
        #expect(absent.output.contains("exit 1"), "a file never archived is the end of the archive: \(absent.output)")
        let status = try await stack.automate(["backup", "status"])
        #expect(status.output.contains("WAL archive: last"), "\(status.output)\(status.error)")

        // The gateway down while writes go on: archiving fails and PostgreSQL keeps the segments.
        // One connection per call: the supervisor closes idle ones, and the outage below may be long.
        func gateway(_ method: RPCUnaryMethod<ControlService.ServiceRequest, ControlService.ServiceResponse>) async throws {
            let supervisor = try await stack.client()
            defer { Task { await supervisor.close() } }
            var request = ControlService.ServiceRequest()
            request.name = "backup-gateway"
            _ = try await supervisor.call(method, request)
        }
        try await gateway(SupervisorService.stopService)
        var during: [String] = []
        for n in 0..<3 { during.append(try await Self.writeAndSwitch(stack, marker: "wal-outage-\(n)-")) }
        let failedBefore = Int(try await Self.query(stack, "SELECT failed_count FROM pg_stat_archiver")) ?? 0
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, (Int(try await Self.query(stack, "SELECT failed_count FROM pg_stat_archiver")) ?? 0) <= failedBefore {
            try await Task.sleep(for: .milliseconds(200))
        }
        let shown = try await stack.automate(["status"])
        #expect(shown.output.contains("FAILING"), "automate status shows the archiver failing: \(shown.output)")
        try await gateway(SupervisorService.startService)
        try await Self.waitArchived(stack, during.last!, within: 120)
        for name in during { #expect(try await Self.record(stack, name).size == 16 << 20) }

        let verify = try await stack.automate(["backup", "verify"])
        #expect(verify.succeeded && verify.output.contains("WAL archive") && verify.output.contains("The WAL archive has no faults."), "\(verify.output)\(verify.error)")

        // A segment lost from the middle of the chain: verify names it.
        try FileManager.default.removeItem(atPath: stack.home.backupsDirectory + "/" + WALArchive.recordKey(during[1], cluster: try await Self.cluster(stack)))
        let broken = try await stack.automate(["backup", "verify"])
        #expect(!broken.succeeded && broken.output.contains("\(during[1]) (cluster"), "\(broken.output)\(broken.error)")
    }
}
