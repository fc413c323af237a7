import AutomateSupervisor
import BackupContract
import BackupRepository
import Foundation
import Testing

/// A stop in the middle of a backup (kill -9 of the deployment-service, or of the supervisor) is finished
/// at the next start: the repository says failed with the reason, as the store does, and history stays.
@Suite("Interrupted backups are reconciled at start-up", .serialized)
struct BackupReconcileTests {
    static let reason = "the deployment-service stopped while it ran (restarted at "

    /// A full stack with a few hundred MB to back up, and a backup caught while it moves them: `victim`
    /// (looked up before the backup starts) gets SIGKILL from inside the status watch, the moment the
    /// compliance-service's archive has moved its first bytes, so the backup cannot finish in between.
    static func backupCaughtMidWay(_ stack: TestStack, victim: (TestStack) async throws -> pid_t) async throws -> (id: String, pid: pid_t) {
        try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await stack.loadBulkData(fileMiB: 512)
        let pid = try await victim(stack)
        let id = try await stack.startBackup()
        let mid = try await stack.watchBackup(id) { s in
            let caught = s.state == .running
                && s.services.contains { $0.service == "compliance-service" && $0.state == .running && $0.progress.bytesDone > 0 }
            if caught { kill(pid, SIGKILL) }
            return caught || s.state != .running
        }
        try #require(mid.state == .running, "the backup ended before the kill: \(mid)")
        #expect(try String(contentsOfFile: stack.home.backupsDirectory + "/\(id)/.status", encoding: .utf8) == "in_progress\n")
        return (id, pid)
    }

    /// `<repository>/<id>/.status`, read every 50 ms until it is not `in_progress` or `deadline` passes.
    static func statusAfterReconcile(_ stack: TestStack, _ id: String, deadline: ContinuousClock.Instant) async throws -> String {
        let path = stack.home.backupsDirectory + "/\(id)/.status"
        while true {  // one look after the deadline too: this task may have waited for a thread
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if text != "in_progress\n" || ContinuousClock.now >= deadline { return text }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Within 10 s of `restarted`: `.status` failed, backup-result.json with the reason, `backup list`
    /// and `backup status` (no id) say so; then the next backup completes.
    static func expectReconciled(_ stack: TestStack, _ id: String, restarted: ContinuousClock.Instant) async throws {
        let status = try await statusAfterReconcile(stack, id, deadline: restarted + .seconds(10))
        #expect(status == "failed\n", "\(id)/.status 10 s after the restart: \(status)")
        if status != "failed\n" {
            let log = (try? String(contentsOfFile: stack.home.logPath(service: "deployment-service"), encoding: .utf8)) ?? ""
            print("deployment-service log (last lines):\n" + log.split(separator: "\n").suffix(40).joined(separator: "\n"))
        }
        let elapsed = ContinuousClock.now - restarted
        print("backup \(id): .status failed \(elapsed) after the restart")

        let result = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: stack.home.backupsDirectory + "/\(id)/backup-result.json"))) as? [String: Any]
        #expect(result?["state"] as? String == "failed")
        #expect((result?["error"] as? String)?.hasPrefix(reason) == true, "\(String(describing: result))")
        let services = result?["services"] as? [[String: Any]] ?? []
        // The services still at work when it stopped are failed with the reason (one caught moving its last
        // bytes may have completed in between).
        #expect(services.contains { $0["state"] as? String == "failed" && ($0["error"] as? String)?.contains(reason) == true }, "\(services)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.backupsDirectory + "/\(id)/checksums.json"))

        let list = try await stack.automate(["backup", "list"])
        #expect(list.output.contains("\(id)  failed (not restorable)"), "\(list.output)\(list.error)")
        #expect(list.output.contains(reason), "\(list.output)")
        let last = try await stack.automate(["backup", "status"])
        #expect(last.succeeded && last.output.hasPrefix("backup \(id)  "), "\(last.output)\(last.error)")
        #expect(last.output.contains("error: " + reason), "\(last.output)")
        let json = try await stack.automate(["backup", "status", "--json"])
        #expect(json.output.contains(id) && json.output.contains("FAILED"), "\(json.output)\(json.error)")

        // The next backup completes (the bulk file removed to keep it short).
        unlink(stack.home.dataDirectory + "/compliance-service/profiles/bulk.bin")
        let next = try await stack.createBackup()
        #expect(next > id)
        let after = try await stack.automate(["backup", "status"])
        #expect(after.output.hasPrefix("backup \(next)  done"), "\(after.output)\(after.error)")
        #expect(try String(contentsOfFile: stack.home.backupsDirectory + "/\(next)/.status", encoding: .utf8) == "completed\n")
    }

    @Test("kill -9 of the deployment-service mid-backup: the restarted one marks it failed in the repository")
    func killDeploymentService() async throws {
        let stack = try TestStack(name: "reconcile-ds")
        defer { Task { await stack.tearDown() } }
        let (id, pid) = try await Self.backupCaughtMidWay(stack) { try await $0.pid(of: "deployment-service") }
        try await stack.waitFor("deployment-service", within: .seconds(60)) { $0.state == "running" && $0.pid > 0 && $0.pid != pid }
        try await Self.expectReconciled(stack, id, restarted: ContinuousClock.now)
    }

    @Test("kill -9 of the supervisor mid-backup, then automate start: the backup is marked failed in the repository")
    func killSupervisor() async throws {
        let stack = try TestStack(name: "reconcile-sup")
        defer { Task { await stack.tearDown() } }
        let (id, _) = try await Self.backupCaughtMidWay(stack) { try #require(SupervisorLock.holder(path: $0.home.lockFilePath)) }
        // Its guard takes every service with it.
        let deadline = ContinuousClock.now + .seconds(10)
        var left = processesMentioning(stack.home.path)
        while !left.isEmpty && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            left = processesMentioning(stack.home.path)
        }
        try #require(left.isEmpty, "still alive after kill -9 of the supervisor: \(left)")
        #expect(try String(contentsOfFile: stack.home.backupsDirectory + "/\(id)/.status", encoding: .utf8) == "in_progress\n")

        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await Self.expectReconciled(stack, id, restarted: ContinuousClock.now)
    }
}
