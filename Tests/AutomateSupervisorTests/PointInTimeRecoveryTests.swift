import AutomateRPC
import AutomateSupervisor
import BackupRepository
import Foundation
import Testing

/// Point-in-time recovery on the real stack: a backup (with its base backup), rows written at t1, t2 and
/// t3 with a segment switch after each, then `automate restore --to-time` between t2 and t3 into a
/// fresh home. The preflight refuses targets it cannot reach (before the oldest base backup, past the
/// archived WAL, beyond a missing segment) before anything is touched.
@Suite("Point-in-time recovery", .serialized)
struct PointInTimeRecoveryTests {
    /// Writes row `n` (its own transaction), switches to a new segment; returns the finished segment.
    static func insertAndSwitch(_ stack: TestStack, _ n: Int) async throws -> String {
        _ = try await WALArchivingTests.query(stack, "CREATE TABLE IF NOT EXISTS pitr_probe (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO pitr_probe (n) VALUES (\(n))")
        return try await WALArchivingTests.query(stack, "SELECT pg_walfile_name(pg_switch_wal())")
    }

    /// The server's clock now, in UTC to the microsecond (`2026-12-03 05:10:11.123456Z`).
    static func now(_ stack: TestStack) async throws -> String {
        try await WALArchivingTests.query(stack, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'")
    }

    /// Starts or stops one service through the supervisor (a connection per call).
    static func supervise(_ stack: TestStack, _ name: String,
                          _ method: RPCUnaryMethod<ControlService.ServiceRequest, ControlService.ServiceResponse>) async throws {
        let supervisor = try await stack.client()
        defer { Task { await supervisor.close() } }
        var request = ControlService.ServiceRequest()
        request.name = name
        _ = try await supervisor.call(method, request)
    }

    @Test("--to-time between t2 and t3 (inside a gateway outage) into a fresh home brings back exactly the rows up to t2; unreachable targets and a missing segment are refused before anything is touched")
    func restoreToTime() async throws {
        let stack = try TestStack(name: "pitr")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack(archiving: true)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let id = try await stack.createBackup()

        _ = try await Self.insertAndSwitch(stack, 1)
        // t2, the target and t3 fall inside a gateway outage: archiving fails (PostgreSQL keeps the
        // segments) until the gateway is back, and nothing is lost.
        try await Self.supervise(stack, "backup-gateway", SupervisorService.stopService)
        let failedBefore = Int(try await WALArchivingTests.query(stack, "SELECT failed_count FROM pg_stat_archiver")) ?? 0
        let second = try await Self.insertAndSwitch(stack, 2)
        let target = try await Self.now(stack)
        let third = try await Self.insertAndSwitch(stack, 3)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, (Int(try await WALArchivingTests.query(stack, "SELECT failed_count FROM pg_stat_archiver")) ?? 0) < failedBefore + 2 {
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect((Int(try await WALArchivingTests.query(stack, "SELECT failed_count FROM pg_stat_archiver")) ?? 0) >= failedBefore + 2)
        try await Self.supervise(stack, "backup-gateway", SupervisorService.startService)
        try await WALArchivingTests.waitArchived(stack, third, within: 120)
        let cluster = try await WALArchivingTests.cluster(stack)
        #expect(try await WALArchivingTests.query(stack, "SELECT count(*) FROM pitr_probe") == "3")

        let repository = try await stack.copyRepositoryAndLoseHome(ports)
        let postgresData = stack.home.dataDirectory + "/postgresql"

        // Refused before anything is touched: before the oldest base backup, past the archived WAL.
        let early = try await stack.automate(["restore", repository, "--to-time", "2020-01-01 00:00:00Z"])
        #expect(early.status == .exited(2) && early.error.contains("before the end of the oldest base backup (backup \(id)"), "\(early.output)\(early.error)")
        let late = try await stack.automate(["restore", repository, "--to-time", "2099-01-01 00:00:00Z"])
        #expect(late.status == .exited(2) && late.error.contains("past the end of the archived WAL"), "\(late.output)\(late.error)")
        let both = try await stack.automate(["restore", repository, "--to-time", target, "--to-backup-end"])
        #expect(both.status == .exited(2) && both.error.contains("give one of"), "\(both.error)")
        #expect(!FileManager.default.fileExists(atPath: postgresData), "a refused restore made \(postgresData)")

        // A segment missing from the chain: verify names it, a restore past it refuses.
        let record = repository + "/" + WALArchive.recordKey(second, cluster: cluster)
        let aside = stack.root + "/record-aside.json"
        try FileManager.default.moveItem(atPath: record, toPath: aside)
        let verify = try await stack.automate(["backup", "verify", "--repository", repository])
        #expect(!verify.succeeded && (verify.output + verify.error).contains(second), "\(verify.output)\(verify.error)")
        let gap = try await stack.automate(["restore", repository, "--to-time", target])
        #expect(gap.status == .exited(2) && gap.error.contains("WAL segment \(second) is missing"), "\(gap.output)\(gap.error)")
        #expect(!FileManager.default.fileExists(atPath: postgresData))
        try FileManager.default.moveItem(atPath: aside, toPath: record)

        let restore = try await stack.automate(["restore", repository, "--to-time", target])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        #expect(restore.output.contains("Point-in-time recovery to the time"), "\(restore.output)")
        #expect(restore.output.contains("automate-postgresql recovered from backup \(id)'s base backup"), "\(restore.output)")
        #expect(restore.output.contains("reached WAL position") && restore.output.contains("timeline 2"), "\(restore.output)")

        // Exactly the rows up to t2, in the database the teams-service kept as recovered.
        #expect(try await WALArchivingTests.query(stack, "SELECT string_agg(n::text, ',' ORDER BY n) FROM pitr_probe") == "1,2")
        #expect(try await WALArchivingTests.query(stack, "SELECT pg_is_in_recovery()") == "f")
        let teams = try await stack.automate(["teams", "list"])
        #expect(teams.output.contains("core\talice,bob\tthe core team"), "\(teams.output)\(teams.error)")
        let status = try await stack.status()
        #expect(status.count == TestStack.fullStackServices.count && status.allSatisfy { $0.state == "running" }, "\(status)")
        // The recovery's settings went with it: the next start of the server is a normal one.
        let restarted = try await stack.automate(["restart", "automate-postgresql"])
        #expect(restarted.succeeded, "\(restarted.output)\(restarted.error)")
        // `automate restart` returns once the start is under way, not once the server is up again.
        try await stack.waitFor("automate-postgresql", within: .seconds(60)) { $0.state == "running" }
        #expect(try await WALArchivingTests.query(stack, "SELECT count(*) FROM pitr_probe") == "2")
        #expect(!FileManager.default.fileExists(atPath: postgresData + "/automate-recovery.conf"))
    }

    @Test("deleting a backup deletes the WAL no kept base backup needs; the chain from the kept one still verifies")
    func retentionByKeptBaseBackups() async throws {
        let stack = try TestStack(name: "pitr-keep")
        defer { Task { await stack.tearDown() } }
        _ = try stack.useFullStack(archiving: true)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let first = try await stack.createBackup()
        let between = try await Self.insertAndSwitch(stack, 1)
        let second = try await stack.createBackup()
        let after = try await Self.insertAndSwitch(stack, 2)
        try await WALArchivingTests.waitArchived(stack, after)
        let cluster = try await WALArchivingTests.cluster(stack)
        let folder = stack.home.backupsDirectory + "/" + WALArchive.clusterFolder(cluster) + "00000001/"
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            stack.home.backupsDirectory + "/\(second)/automate-postgresql/pg_base/metadata.json"))) as? [String: Any]
        let startName = try #require(metadata?["start_wal"] as? String)
        let keptStart = try #require(WALSegment(name: startName))
        #expect(FileManager.default.fileExists(atPath: folder + between + ".json"))

        let delete = try await stack.automate(["backup", "delete", first, "--yes"])
        #expect(delete.succeeded, "\(delete.output)\(delete.error)")
        let left = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        let segments = left.compactMap { WALSegment(name: String($0.prefix(24))) }
        #expect(!segments.isEmpty && segments.allSatisfy { $0.number >= keptStart.number }, "\(left)")
        #expect(left.contains(keptStart.name + ".json") && left.contains(after + ".json"), "\(left)")
        #expect(!left.contains(between + ".json") && !left.contains(between + ".zst"), "\(left)")
        let verify = try await stack.automate(["backup", "verify"])
        #expect(verify.succeeded && verify.output.contains("The WAL archive has no faults."), "\(verify.output)\(verify.error)")
        // The kept backup still recovers to its end: the chain from its first segment is whole.
        let repository = BackupRepository(path: stack.home.backupsDirectory)
        let plan = try PointInTimePlanner(repository: repository).plan(.backupEnd, backups: [BackupID(second)!], chosen: BackupID(second)!)
        #expect(plan.base.start == keptStart)
    }

    @Test("through the gateway's S3 mode (moto upstream), chunked and encrypted: --to-time recovers the rows up to t2")
    func restoreToTimeFromS3() async throws {
        let moto = try await MotoUpstream()
        defer { moto.stop() }
        let stack = try TestStack(name: "pitr-s3")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack(repositoryFormat: "chunked", archiving: true)
        let credentials = try await moto.useAsUpstream(of: stack, ports: ports, prefix: "site-c/")
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let id = try await stack.createBackup()
        _ = try await Self.insertAndSwitch(stack, 1)
        _ = try await Self.insertAndSwitch(stack, 2)
        let target = try await Self.now(stack)
        let third = try await Self.insertAndSwitch(stack, 3)
        try await WALArchivingTests.waitArchived(stack, third)
        // No WAL lies in clear in the bucket: records name chunks, there is no data object beside them.
        let keys = try moto.client.listObjectsSync(bucket: "automate-backups", prefix: "site-c/automate-postgresql-wal/").map(\.key)
        #expect(!keys.isEmpty && keys.allSatisfy { $0.hasSuffix(".json") }, "\(keys)")
        let passphrase = stack.root + "/passphrase"
        try #require(try await stack.automate(["backup", "key", "export", "--to", passphrase]).succeeded)
        try await stack.loseHome(ports)

        let s3 = ["--s3-endpoint", moto.endpoint, "--s3-credentials", credentials, "--passphrase-file", passphrase]
        let restore = try await stack.automate(["restore", "s3://automate-backups/site-c", "--to-time", target] + s3)
        try #require(restore.succeeded, "\(stack.failure(restore))")
        #expect(restore.output.contains("recovered from backup \(id)'s base backup"), "\(restore.output)")
        #expect(try await WALArchivingTests.query(stack, "SELECT string_agg(n::text, ',' ORDER BY n) FROM pitr_probe") == "1,2")
    }
}
