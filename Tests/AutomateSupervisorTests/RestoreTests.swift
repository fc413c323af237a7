import AutomateRPC
import AutomateSupervisor
import BackupContract
import BackupRepository
import DomainAPI
import Foundation
import S3Client
import Testing

/// `automate restore` against the real stack: back up, lose the home, restore, compare with plain tools.
@Suite("Restore by relaunching", .serialized)
struct RestoreTests {
    /// Extra files with a mode of their own and a symlink, owned like their folder.
    static func addFileVariety(_ stack: TestStack) async throws {
        let profiles = stack.home.dataDirectory + "/compliance-service/profiles"
        let r = try await stack.shell("""
            printf 'secret profile\\n' > '\(profiles)/private.yml' && chmod 640 '\(profiles)/private.yml' && \
            mkdir -p '\(profiles)/archive' && printf 'old\\n' > '\(profiles)/archive/2025.yml' && \
            ln -s linux-baseline.yml '\(profiles)/current.yml' && \
            chown -R --reference='\(profiles)' '\(profiles)' && chown -h --reference='\(profiles)' '\(profiles)/current.yml'
            """)
        guard r.succeeded else { throw TestFailure("files: \(r.error)") }
    }

    /// The restore id the CLI printed.
    static func restoreID(in output: String) -> String? {
        guard let range = output.range(of: "(restore id ") else { return nil }
        return String(output[range.upperBound...].prefix { $0 != ")" })
    }

    /// Follows a restore until its long-term part ends.
    static func waitForLongTerm(_ stack: TestStack, _ restoreID: String) async throws -> StackRestore {
        let client = try await stack.deployment()
        defer { Task { await client.close() } }
        var request = Automate_Deployment_V1_StackRestoreStatusRequest()
        request.restoreID = restoreID
        var last = StackRestore()
        for try await s in client.stream(DeploymentService.watchRestore, request, timeout: .seconds(300)) {
            last = s
        }
        return last
    }

    @Test("round trip: back up, stop, delete the home, restore from a copied repository; everything equal")
    func roundTrip() async throws {
        let stack = try TestStack(name: "restore-trip")
        defer { Task { await stack.tearDown() } }
        // WAL archiving on, as shipped: the restored stack's new cluster archives beside the old one's.
        let ports = try stack.useFullStack(archiving: true)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await Self.addFileVariety(stack)
        let before = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(before.documents.count == 3 && before.files.count >= 5)

        let id = try await stack.createBackup()
        let repository = try await stack.copyRepositoryAndLoseHome(ports)

        let list = try await stack.automate(["restore", "list", repository])
        #expect(list.output.contains("\(id)  completed"), "\(list.output)")
        let restore = try await stack.automate(["restore", repository])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        #expect(restore.output.contains("Restored backup \(id) into \(stack.home.path)"))
        let restoreID = try #require(Self.restoreID(in: restore.output))
        let final = try await Self.waitForLongTerm(stack, restoreID)
        #expect(final.longTermState == .completed, "\(final)")

        let after = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(after == before, "\(after.differences(from: before))")
        let teams = try await stack.automate(["teams", "list"])
        #expect(teams.output.contains("core\talice,bob\tthe core team") && teams.output.contains("infra\tcarol"), "\(teams.output)\(teams.error)")
        let search = try await stack.automate(["compliance", "search", "kernel"])
        #expect(search.output.contains("node-2\tfailed\tkernel too old"), "\(search.output)\(search.error)")
        let status = try await stack.status()
        #expect(status.count == TestStack.fullStackServices.count && status.allSatisfy { $0.state == "running" })
        let restoreStatus = try await stack.automate(["restore", "status", restoreID])
        #expect(restoreStatus.output.contains("short-term done, long-term done"), "\(restoreStatus.output)")

        // The restored deployment-service knows the backup it came from; a new backup works.
        let again = try await stack.automate(["backup", "create", "--no-progress"])
        #expect(again.succeeded, "\(again.output)\(again.error)")
    }

    @Test("a phase-one repository (a plain-SQL dump from pg_dump and a .tar.gz) restores")
    func phaseOne() async throws {
        let stack = try TestStack(name: "restore-phase1")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let folder = stack.root + "/phase-one/20250102030405/notifications-service"
        let data = stack.home.dataDirectory + "/notifications-service"
        let made = try await stack.shell("""
            mkdir -p '\(folder)/pg_data' '\(folder)/files' && \
            pg_dump -h '\(stack.home.runDirectory)' -p \(ports.postgres) -U automate -d notifications_service -f '\(folder)/pg_data/notifications_service.sql' && \
            tar czf '\(folder)/files/config.tar.gz' -C '\(data)' config && chmod -R a+rX '\(stack.root)/phase-one'
            """)
        try #require(made.succeeded, "\(made.error)")
        let before = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        try await stack.loseHome(ports)

        let restore = try await stack.automate(["restore", stack.root + "/phase-one"])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        let after = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(after.tables["notifications_service.outbox"] == before.tables["notifications_service.outbox"])
        #expect(after.files.filter { $0.key.hasPrefix("notifications-service/") } == before.files.filter { $0.key.hasPrefix("notifications-service/") })
        #expect(after.tables["teams_service.teams"]?.hasPrefix("0 rows") == true)  // not in that backup: left new and empty
    }

    @Test("preflight refuses a flipped byte, a missing artifact, an incomplete backup and a wrong fingerprint; the home is untouched")
    func preflightFaults() async throws {
        let stack = try TestStack(name: "restore-faults")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let id = try await stack.createBackup()
        try #require(try await stack.automate(["stop"]).succeeded)

        let faults: [(name: String, damage: String, message: String)] = [
            ("dump", "printf '\\xff' | dd of=\(id)/teams-service/pg_data/teams_service.fc.zst bs=1 seek=100 conv=notrunc status=none",
             "corrupted: \(id)/teams-service/pg_data/teams_service.fc.zst: sha256"),
            ("tarball", "printf '\\xff' | dd of=\(id)/compliance-service/files/profiles.tar.zst bs=1 seek=40 conv=notrunc status=none",
             "corrupted: \(id)/compliance-service/files/profiles.tar.zst: sha256"),
            ("ndjson", "sed -i 's/kernel/kernal/' automate-elasticsearch-data/compliance-service/\(id)/compliance-reports.ndjson",
             "corrupted: \(id)/../automate-elasticsearch-data/compliance-service/\(id)/compliance-reports.ndjson: sha256"),
            ("missing", "rm \(id)/notifications-service/files/config.tar.zst",
             "missing: \(id)/notifications-service/files/config.tar.zst: listed in metadata.json, not on disk"),
            ("incomplete", "printf 'in_progress\\n' > \(id)/.status", "\(id)/.status is in_progress"),
        ]
        for fault in faults {
            let repository = stack.root + "/repo-\(fault.name)"
            let damaged = try await stack.shell("cp -a '\(stack.home.backupsDirectory)' '\(repository)' && cd '\(repository)' && \(fault.damage)")
            try #require(damaged.succeeded, "\(fault.name): \(damaged.error)")
            let home = stack.root + "/fresh-\(fault.name)"
            let r = try await stack.automate(["restore", repository, id, "--home", home])
            #expect(r.status == .exited(2), "\(fault.name): \(r.status) \(r.output)\(r.error)")
            #expect(r.error.contains(fault.message), "\(fault.name): \(r.error)")
            #expect(!FileManager.default.fileExists(atPath: home), "\(fault.name): the home was touched")
        }
        let wrong = try await stack.automate(["restore", stack.home.backupsDirectory, id, "--sha256", String(repeating: "0", count: 64), "--home", stack.root + "/fresh-sha"])
        #expect(wrong.status == .exited(2) && wrong.error.contains("not the backup you named"), "\(wrong.error)")
        let occupied = try await stack.automate(["restore", stack.home.backupsDirectory, id])
        #expect(occupied.status == .exited(2) && occupied.error.contains("pass --force"), "\(occupied.error)")
    }

    @Test("kill -9 of a service during its restore fails the restore naming it; the same restore run again completes")
    func killDuringRestore() async throws {
        let stack = try TestStack(name: "restore-kill")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await stack.loadBulkData()
        unlink(stack.home.dataDirectory + "/compliance-service/profiles/bulk.bin")
        let id = try await stack.createBackup()
        let repository = try await stack.copyRepositoryAndLoseHome(ports)

        let restore = try LiveCommand(stack, ["restore", repository, id])
        let shown = await restore.waitFor("(restore id ")
        let restoreID = try #require(Self.restoreID(in: shown), "\(shown)")
        let client = try await stack.deployment()
        var request = Automate_Deployment_V1_StackRestoreStatusRequest()
        request.restoreID = restoreID
        var killed = false
        for try await s in client.stream(DeploymentService.watchRestore, request) {
            if !killed, s.shortTerm.contains(where: { $0.service == "teams-service" && $0.state == .running && $0.progress.bytesDone > 0 }) {
                kill(try await stack.pid(of: "teams-service"), SIGKILL)
                killed = true
            }
        }
        await client.close()
        try #require(killed, "the restore of teams-service ended before the kill")
        let (status, output) = await restore.finish()
        #expect(status == .exited(1), "\(output)")
        #expect(output.contains("failed: teams-service:"), "\(output)")

        let again = try await stack.automate(["restore", repository, id, "--force"])
        #expect(again.succeeded, "\(again.output)\(again.error)")
        let rows = try await stack.automate(["psql", "teams_service", "--", "-AtXc", "SELECT count(*) FROM filler"])
        #expect(rows.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1200000", "\(rows.output)\(rows.error)")
        let teams = try await stack.automate(["teams", "list"])
        #expect(teams.output.contains("core\talice,bob"), "\(teams.output)\(teams.error)")
    }

    @Test("restore relaunches in dependency order, from the backup's manifests; a contract service refuses its API until its data is back; one that cannot be held down fails the restore naming it")
    func relaunchOrderAndHold() async throws {
        let stack = try TestStack(name: "restore-order")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack()
        // The teams-service's manifest at backup time sets a variable; the installation's says otherwise
        // by the time of the restore: the restored service must run with the backup's.
        let manifestPath = stack.servicesDirectory + "/teams-service.toml"
        let original = try String(contentsOfFile: manifestPath, encoding: .utf8)
        try (original + "\n[environment]\nRELAUNCH_MARK = \"at-backup\"\n").write(toFile: manifestPath, atomically: true, encoding: .utf8)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let id = try await stack.createBackup()
        let repository = try await stack.copyRepositoryAndLoseHome(ports)
        try (original + "\n[environment]\nRELAUNCH_MARK = \"installed\"\n").write(toFile: manifestPath, atomically: true, encoding: .utf8)

        // The teams API, asked over and over during the whole restore: it may refuse (held down), but
        // every answer it gives must hold the restored teams (the fresh database is empty).
        let socket = stack.home.runDirectory + "/teams-service.sock"
        let poller = Task { () -> (refused: [String], answered: [[String]]) in
            var refused: [String] = []
            var answered: [[String]] = []
            while !Task.isCancelled {
                if let client = try? await RPCClient.connect(socketPath: socket) {
                    do {
                        let r = try await client.call(TeamsService.listTeams, Automate_Teams_V1_ListTeamsRequest(), timeout: .seconds(5))
                        answered.append(r.teams.map(\.name).sorted())
                    } catch let e as RPCError where e.code == .unavailable {
                        refused.append(e.message)
                    } catch {}
                    await client.close()
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return (refused, answered)
        }
        let restore = try await stack.automate(["restore", repository, id])
        let polled = await { poller.cancel(); return await poller.value }()
        try #require(restore.succeeded, "\(stack.failure(restore))")
        #expect(!polled.answered.isEmpty, "the teams API never answered during the restore")
        #expect(polled.answered.allSatisfy { $0 == ["core", "infra"] }, "answers before the data was back: \(Set(polled.answered))")
        #expect(polled.refused.allSatisfy { $0.contains("held down for restore") || $0.contains("is restoring backup") }, "\(polled.refused.prefix(3))")

        // The order, from the supervisor's log: the gateway and the deployment-service first, every
        // other service held; PostgreSQL, then its sidecar, then the services using them.
        let log = try String(contentsOfFile: stack.home.supervisorLogPath, encoding: .utf8)
        let lines = log.split(separator: "\n").map(String.init)
        let restoreStart = try #require(lines.lastIndex { $0.contains("starting 2 services: backup-gateway, deployment-service; holding") }, "\(lines.suffix(40))")
        let after = Array(lines[restoreStart...])
        func first(_ needle: String) -> Int? { after.firstIndex { $0.contains(needle) } }
        for service in ["automate-postgresql", "automate-search", "pg-sidecar-service", "teams-service", "compliance-service", "notifications-service"] {
            #expect(first("\(service) held: ") != nil, "\(service) was not held: \(after.prefix(30))")
        }
        let deploymentUp = try #require(first("deployment-service running"), "\(after.prefix(60))")
        let postgresStarts = try #require(first("automate-postgresql starting"), "\(after.prefix(60))")
        let sidecarStarts = try #require(first("pg-sidecar-service starting"))
        let sidecarUp = try #require(first("pg-sidecar-service running"))
        let teamsHeld = try #require(first("teams-service: starting held down for restore"))
        let teamsStarts = try #require(first("teams-service starting"))
        // notifications-service has no contract: restored through the pg-sidecar while down, started after.
        let notificationsStarts = try #require(first("notifications-service starting"))
        #expect(deploymentUp < postgresStarts && postgresStarts < sidecarStarts && sidecarUp < teamsHeld && teamsHeld < teamsStarts)
        #expect(sidecarUp < notificationsStarts)

        // Relaunched from the backup's manifest (named in the supervisor's log), not the installation's.
        #expect(first("teams-service: runs with the manifest from backup \(id): deployment-service/manifests/teams-service.toml") != nil,
                "\(after.filter { $0.contains("teams-service") }.prefix(10))")
        let teamsPID = try #require(try await stack.status().first { $0.name == "teams-service" }?.pid)
        let environ = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(teamsPID)/environ"))
        let variables = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(variables.contains("RELAUNCH_MARK=at-backup"), "\(variables.filter { $0.hasPrefix("RELAUNCH") })")

        // A service that drops its hold (its command unsets AUTOMATE_RESTORE_ID) cannot be held down:
        // the restore fails naming it before its data is touched, and leaves it stopped. What runs is always
        // the installation's command, whatever the backup's manifest says.
        let manifest = try String(contentsOfFile: manifestPath, encoding: .utf8)
        try manifest.replacingOccurrences(
            of: "command = [\"${AUTOMATE_BIN_DIR}/teams-service\"]",
            with: "command = [\"/usr/bin/env\", \"-u\", \"AUTOMATE_RESTORE_ID\", \"${AUTOMATE_BIN_DIR}/teams-service\"]"
        ).write(toFile: manifestPath, atomically: true, encoding: .utf8)
        let refused = try await stack.automate(["restore", repository, id, "--force"])
        #expect(!refused.succeeded)
        #expect(refused.error.contains("teams-service: cannot be held down"), "\(refused.output)\(refused.error)")
        let teams = try #require(try await stack.status().first { $0.name == "teams-service" })
        #expect(teams.state == "stopped", "\(teams)")
    }

    @Test("a backup taken with the gateway in S3 mode (moto upstream) restores from S3 into a fresh home")
    func s3Mode() async throws {
        let moto = try await MotoUpstream()
        defer { moto.stop() }
        let upstream = moto.client
        let stack = try TestStack(name: "restore-s3")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack()
        let credentials = try await moto.useAsUpstream(of: stack, ports: ports, prefix: "site-a/")
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await Self.addFileVariety(stack)
        let before = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        let id = try await stack.createBackup()
        let keys = try upstream.listObjectsSync(bucket: "automate-backups", prefix: "site-a/").map(\.key)
        #expect(keys.contains("site-a/\(id)/.status") && keys.contains("site-a/\(id)/teams-service/pg_data/teams_service.fc.zst"), "\(keys)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.backupsDirectory + "/\(id)"))
        try await stack.loseHome(ports)

        let s3 = ["--s3-endpoint", moto.endpoint, "--s3-credentials", credentials]
        let list = try await stack.automate(["restore", "list", "s3://automate-backups/site-a"] + s3)
        #expect(list.output.contains("\(id)  completed"), "\(list.output)\(list.error)")
        let restore = try await stack.automate(["restore", "s3://automate-backups/site-a", id] + s3)
        try #require(restore.succeeded, "\(stack.failure(restore))")
        let final = try await Self.waitForLongTerm(stack, try #require(Self.restoreID(in: restore.output)))
        #expect(final.longTermState == .completed, "\(final)")
        let after = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(after == before, "\(after.differences(from: before))")
    }
}
