import AutomateSupervisor
import BackupContract
import BackupRepository
import Foundation
import Testing

/// `automate backup create` against the real stack: PostgreSQL, search engine, gateway, sidecars,
/// deployment-service, the contract services (teams, compliance) and one without it (notifications).
@Suite("Stack backups (deployment-service)", .serialized)
struct BackupOrchestrationTests {
    @Test("a backup of every kind of service: every artifact present, sha256 equal, readable with plain tools")
    func backupOfEveryService() async throws {
        let stack = try TestStack(name: "backup-all")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack(archiving: true)  // the cluster's base backup too
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()

        let create = try await stack.automate(["backup", "create"])
        try #require(create.succeeded, "\(create.output)\(create.error)")
        let id = try #require(create.output.split(separator: "\n").last { $0.hasPrefix("Created backup ") }?.split(separator: " ")[2])
        let repository = BackupRepository(path: stack.home.backupsDirectory)
        let folder = repository.folder(of: BackupID(String(id))!)
        #expect(try String(contentsOfFile: folder + "/.status", encoding: .utf8) == "completed\n")

        // checksums.json lists every service's metadata.json with its real sha256.
        let checksums = try JSONDecoder().decode(Checksums.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/checksums.json")))
        #expect(Set(checksums.files.keys) == Set(["teams-service", "compliance-service", "notifications-service", "deployment-service", "automate-postgresql"].map { "\($0)/metadata.json" }))
        var formats: [String: Int] = [:]
        for (file, sha) in checksums.files {
            #expect(try BackupRepository.sha256(ofFile: folder + "/" + file) == sha, "\(file)")
            let service = String(file.split(separator: "/")[0])
            let metadata = try JSONDecoder().decode(ServiceMetadata.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/" + file)))
            for artifact in metadata.artifacts {
                let path = folder + "/\(service)/" + artifact.path
                #expect(try BackupRepository.sha256(ofFile: path) == artifact.sha256, "\(service)/\(artifact.path)")
                formats[artifact.format, default: 0] += 1
                switch artifact.format {
                case "pg_dump_custom_zstd":
                    let list = try await stack.shell("zstd -dc '\(path)' | pg_restore --list")
                    #expect(list.succeeded && list.output.contains("TABLE DATA"), "\(path): \(list.error)")
                case "tar_zstd":
                    let list = try await stack.shell("tar --zstd -tvf '\(path)'")
                    #expect(list.succeeded, "\(path): \(list.error)")
                    #expect(UInt64(list.output.split(separator: "\n").count) == artifact.items, "\(path)")
                case "ndjson_export":
                    // Bulk format: an action line and a source line per document.
                    let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count
                    #expect(UInt64(lines) == 2 * (artifact.items ?? 0))
                    #expect(artifact.items == 3)
                case "pg_basebackup_tar_zstd":
                    // The whole cluster, as pg_basebackup wrote it: a recovery starts from its backup_label.
                    let list = try await stack.shell("zstd -dc '\(path)' | tar -tf -")
                    #expect(list.succeeded && list.output.contains("backup_label") && list.output.contains("PG_VERSION"), "\(path): \(list.error)")
                default: break
                }
            }
            if service == "teams-service" {
                #expect(metadata.artifacts.first { $0.format == "pg_dump_custom_zstd" }?.items == 2 + 3)  // 2 teams, 3 members
            }
            if service == "compliance-service" {
                let tar = try await stack.shell("tar --zstd -tf '\(folder)/compliance-service/files/profiles.tar.zst'")
                #expect(tar.output.contains("profiles/linux-baseline.yml"))
            }
            if service == "deployment-service" {
                #expect(metadata.deployment?.map(\.name).sorted() == TestStack.fullStackServices.sorted())
                let state = try await stack.shell("python3 -c \"import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from services').fetchone()[0])\" '\(folder)/deployment-service/state.sqlite'")
                #expect(state.output.trimmingCharacters(in: .whitespacesAndNewlines) == "\(TestStack.fullStackServices.count)", "\(state.error)")
            }
        }
        #expect(formats["pg_dump_custom_zstd"] == 3 && formats["tar_zstd"] == 2 && formats["ndjson_export"] == 1 && formats["pg_basebackup_tar_zstd"] == 1)

        // backup-result.json: every service completed, with sizes.
        let result = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/backup-result.json"))) as? [String: Any]
        #expect(result?["state"] as? String == "completed")
        let services = result?["services"] as? [[String: Any]] ?? []
        #expect(services.count == 5 && services.allSatisfy { $0["state"] as? String == "completed" && (($0["bytes"] as? Int) ?? 0) > 0 })

        let verify = try await stack.automate(["backup", "verify"])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")
        let list = try await stack.automate(["backup", "list"])
        #expect(list.output.contains("\(id)  completed"))

        // A second backup right away gets its own id.
        let again = try await stack.automate(["backup", "create", "--no-progress"])
        #expect(again.succeeded && !again.output.contains("Created backup \(id) "), "\(again.output)\(again.error)")
    }

    @Test("kill -9 during a backup fails it naming the service; the next backup completes",
          arguments: ["compliance-service", "pg-sidecar-service", "backup-gateway"])
    func killDuringBackup(victim: String) async throws {
        let stack = try TestStack(name: "backup-kill")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await stack.loadBulkData(fileMiB: 512)

        let pid = try await stack.pid(of: victim)
        let id = try await stack.startBackup()
        // The victim is killed from inside the watch, the moment the dump (pg-sidecar) or the archive
        // (others) has moved its first bytes, so the backup cannot finish in between.
        let watched = victim == "pg-sidecar-service" ? "teams-service" : "compliance-service"
        let mid = try await stack.watchBackup(id) { s in
            let caught = s.state == .running
                && s.services.contains { $0.service == watched && $0.state == .running && $0.progress.bytesDone > 0 }
            if caught { kill(pid, SIGKILL) }
            return caught || s.state != .running
        }
        try #require(mid.state == .running, "the backup ended before the kill: \(mid)")
        let final = try await stack.watchBackup(id)
        #expect(final.state == .failed)
        // The first service to notice names itself and the cause: a pg-sidecar user for the sidecar.
        let named = victim == "backup-gateway" ? ["backup-gateway"] : [victim]
        for name in named { #expect(final.error.contains(name), "\(final.error)") }
        if victim == "pg-sidecar-service" {
            #expect(["teams-service:", "compliance-service:", "notifications-service:"].contains { final.error.hasPrefix($0) }, "\(final.error)")
        }

        let status = try await stack.automate(["backup", "status", id])
        #expect(status.output.contains("FAILED"), "\(status.output)")
        let folder = stack.home.backupsDirectory + "/\(id)"
        #expect(try String(contentsOfFile: folder + "/.status", encoding: .utf8) == "failed\n")
        #expect(!FileManager.default.fileExists(atPath: folder + "/checksums.json"))
        let list = try await stack.automate(["backup", "list"])
        #expect(list.output.contains("\(id)  failed (not restorable)"), "\(list.output)")

        try await stack.waitFor(victim, within: .seconds(60)) { $0.state == "running" && $0.health == "ok" && $0.pid != pid }
        let next = try await stack.automate(["backup", "create", "--no-progress"])
        #expect(next.succeeded, "\(next.output)\(next.error)")
    }

    @Test("one backup at a time; cancel marks it failed; unknown ids; a flipped byte; retention")
    func concurrencyCancelVerifyRetention() async throws {
        let stack = try TestStack(name: "backup-ops")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await stack.loadBulkData()

        // A second create while one runs: FAILED_PRECONDITION naming the running one.
        let running = try await stack.startBackup()
        let second = try await stack.automate(["backup", "create", "--no-progress"])
        #expect(!second.succeeded)
        #expect(second.error.contains("FAILED_PRECONDITION") && second.error.contains("backup \(running) is running"), "\(second.error)")

        // Cancel: every service stops, the backup is failed, no completed marker, no checksums.
        let cancel = try await stack.automate(["backup", "cancel"])
        #expect(cancel.succeeded && cancel.output.contains("Cancelled backup \(running)"), "\(cancel.output)\(cancel.error)")
        let folder = stack.home.backupsDirectory + "/\(running)"
        #expect(try String(contentsOfFile: folder + "/.status", encoding: .utf8) == "failed\n")
        #expect(!FileManager.default.fileExists(atPath: folder + "/checksums.json"))
        let cancelledStatus = try await stack.automate(["backup", "status", running, "--json"])
        #expect(cancelledStatus.output.contains("CANCELLED"), "\(cancelledStatus.output)")

        // Unknown ids: NOT_FOUND.
        let unknown = try await stack.automate(["backup", "status", "20000101000000"])
        #expect(unknown.status == .exited(4) && unknown.error.contains("NOT_FOUND"), "\(unknown.error)")
        let unknownDelete = try await stack.automate(["backup", "delete", "20000101000000", "--yes"])
        #expect(!unknownDelete.succeeded && unknownDelete.error.contains("NOT_FOUND"), "\(unknownDelete.error)")

        // Three completed backups (the bulk file removed to keep them quick).
        unlink(stack.home.dataDirectory + "/compliance-service/profiles/bulk.bin")
        var ids: [String] = []
        for _ in 0..<3 { ids.append(try await stack.createBackup()) }
        // A flipped byte in a tarball: verify names it and fails.
        let tarball = stack.home.backupsDirectory + "/\(ids[0])/compliance-service/files/profiles.tar.zst"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: tarball))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: tarball))
        let verify = try await stack.automate(["backup", "verify", ids[0]])
        #expect(verify.status == .exited(1))
        #expect(verify.output.contains("corrupted") && verify.output.contains("compliance-service/files/profiles.tar.zst"), "\(verify.output)")

        // Retention: an old phase-one folder, the cancelled backup, and three completed ones.
        let old = stack.home.backupsDirectory + "/20240101000000/notifications-service/pg_data"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
        try "SELECT 1;\n".write(toFile: old + "/notifications.sql", atomically: true, encoding: .utf8)
        _ = try await stack.shell("chown -R --reference='\(stack.home.backupsDirectory)' '\(stack.home.backupsDirectory)/20240101000000' 2>/dev/null; true")
        let dry = try await stack.automate(["backup", "delete", "--older-than", "30d", "--dry-run"])
        #expect(dry.output == "would delete 20240101000000\n", "\(dry.output)\(dry.error)")
        let byAge = try await stack.automate(["backup", "delete", "--older-than", "30d", "--yes"])
        #expect(byAge.succeeded && byAge.output == "Deleted backup 20240101000000\n", "\(byAge.output)\(byAge.error)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.backupsDirectory + "/20240101000000/notifications-service/pg_data/notifications.sql"))
        let keep = try await stack.automate(["backup", "delete", "--keep", "2", "--yes"])
        #expect(keep.succeeded, "\(keep.error)")
        #expect(keep.output == "Deleted backup \(running)\nDeleted backup \(ids[0])\n", "\(keep.output)")
        let left = try BackupRepository(path: stack.home.backupsDirectory).list().map(\.id.rawValue)
        #expect(left == [ids[1], ids[2]], "\(left)")
        let exports = try FileManager.default.contentsOfDirectory(atPath: stack.home.backupsDirectory + "/automate-elasticsearch-data/compliance-service")
        #expect(exports.sorted() == [ids[1], ids[2]])
    }
}
