import AutomateSupervisor
import Logging
import Foundation
import Testing

/// Least privilege between services, as an attacker inside one would probe it: each service runs as a
/// user of its own, reaches only its own data (or what is shared with it), holds no secret in its
/// environment, and may call only what the manifests let it call (SO_PEERCRED, PERMISSION_DENIED).
@Suite("Least privilege", .serialized, .enabled(if: geteuid() == 0, "service users exist only under a root supervisor"))
struct LeastPrivilegeTests {
    /// The uid a process runs as (`Uid:` of /proc/<pid>/status, the real one).
    static func uid(of pid: Int32) throws -> uid_t {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Uid:") })
        return try #require(uid_t(line.split(whereSeparator: { $0 == "\t" || $0 == " " })[1]))
    }

    static func gid(_ name: String) throws -> gid_t {
        try #require(getgrnam(name)?.pointee.gr_gid, "no group \(name)")
    }

    /// `scripts/rpc-call.py SOCKET METHOD [PAYLOAD]` as `user`, with exactly the supplementary `groups`.
    static func call(_ socket: String, _ method: String, _ payload: [UInt8] = [], as user: String, groups: [String]) async throws -> CommandResult {
        let account = try ServiceUser.named(user)
        let groupList = try groups.map { String(try gid($0)) }.joined(separator: ",")
        return try await CommandResult.run("/usr/bin/setpriv", [
            "--reuid=\(account.uid)", "--regid=\(account.gid)", groupList.isEmpty ? "--clear-groups" : "--groups=\(groupList)",
            "/usr/bin/python3", TestStack.repository + "/scripts/rpc-call.py", socket, method,
            payload.map { String(format: "%02x", $0) }.joined(),
        ])
    }

    /// A protobuf message of string fields 1, 2, ... (the backup id and service of a sidecar request).
    static func strings(_ values: String...) -> [UInt8] {
        values.enumerated().flatMap { index, value in [UInt8((index + 1) << 3 | 2), UInt8(value.utf8.count)] + Array(value.utf8) }
    }

    /// Runs a command with exactly the identity of a running service's process: its uid, gid and the
    /// supplementary groups the supervisor gave it (from /proc/<pid>/status).
    static func runLike(_ pid: Int32, _ arguments: [String]) async throws -> CommandResult {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func values(_ key: String) throws -> [String] {
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix(key + ":") })
            return line.dropFirst(key.count + 1).split(whereSeparator: { $0 == "\t" || $0 == " " }).map(String.init)
        }
        let groups = try values("Groups")
        return try await CommandResult.run("/usr/bin/setpriv", [
            "--reuid=\(try values("Uid")[0])", "--regid=\(try values("Gid")[0])",
            groups.isEmpty ? "--clear-groups" : "--groups=\(groups.joined(separator: ","))",
        ] + arguments)
    }

    @Test("a user per service, private data folders, no secret in any environment, callers checked by uid")
    func separation() async throws {
        let stack = try TestStack(name: "least-privilege")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")

        // Each service's process runs as its own user.
        let statuses = try await stack.status()
        var uids: [String: uid_t] = [:]
        for status in statuses {
            let expected = try ServiceUser.named(status.name == "automate-postgresql" || status.name == "automate-search"
                ? status.name : "automate-" + status.name.replacingOccurrences(of: "-service", with: ""))
            uids[status.name] = try Self.uid(of: status.pid)
            #expect(uids[status.name] == expected.uid, "\(status.name) runs as uid \(uids[status.name]!), not \(expected.name)")
        }
        #expect(Set(uids.values).count == TestStack.fullStackServices.count, "\(uids)")

        // Data folders: each its user's, private unless shared as declared.
        let data = stack.home.dataDirectory
        for (folder, user, mode) in [
            ("postgresql", "automate-postgresql", 0o700), ("search", "automate-search", 0o2770),
            ("backup-gateway", "automate-backup-gateway", 0o700), ("deployment-service", "automate-deployment", 0o700),
            ("teams-service", "automate-teams", 0o700), ("notifications-service", "automate-notifications", 0o2770),
        ] {
            var info = stat()
            try #require(stat(data + "/" + folder, &info) == 0, "\(folder) is missing")
            #expect(info.st_uid == (try ServiceUser.named(user)).uid, "\(folder) is not \(user)'s")
            #expect(Int(info.st_mode & 0o7777) == mode, "\(folder) has mode \(String(info.st_mode & 0o7777, radix: 8))")
        }
        func pid(_ service: String) throws -> Int32 { try #require(statuses.first { $0.name == service }?.pid) }
        let foreign = try await Self.runLike(try pid("teams-service"), ["ls", data + "/postgresql"])
        #expect(!foreign.succeeded && foreign.error.contains("Permission denied"), "teams listed PostgreSQL's data: \(foreign.output)")
        let repository = try await Self.runLike(try pid("deployment-service"), ["ls", stack.home.backupsDirectory])
        #expect(!repository.succeeded, "the deployment-service's user listed the repository, which is the gateway's alone")
        let shared = try await Self.runLike(try pid("es-sidecar-service"), ["ls", data + "/search"])
        #expect(shared.succeeded, "search shares its folder with the es-sidecar: \(shared.error)")
        let notShared = try await Self.runLike(try pid("compliance-service"), ["ls", data + "/search"])
        #expect(!notShared.succeeded, "search's folder is not shared with compliance")
        let otherKey = try await Self.runLike(try pid("teams-service"), ["cat", stack.home.secretsDirectory + "/compliance-service.gateway.credentials"])
        #expect(!otherKey.succeeded && otherKey.error.contains("Permission denied"), "teams read compliance's key file")

        // No secret in any environment.
        let keyText = try String(contentsOfFile: stack.home.secretsDirectory + "/gateway.credentials", encoding: .utf8)
        let secret = try #require(keyText.split(separator: "\"").dropFirst(3).first.map(String.init))
        for status in statuses {
            let environ = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(status.pid)/environ"))
            #expect(environ.range(of: Data(secret.utf8)) == nil, "\(status.name)'s environment holds the gateway secret")
        }

        // Callers are checked by uid. The socket layer already keeps these users out (their groups do not
        // reach the sockets); given the groups anyway, the server itself refuses them.
        let run = stack.home.runDirectory
        let deploymentSocket = run + "/deployment-service.sock", pgSidecarSocket = run + "/pg-sidecar-service.sock"
        let deleteBackups = "automate.deployment.v1.DeploymentService/DeleteBackups"
        let unreachable = try await Self.call(deploymentSocket, deleteBackups, as: "automate-search", groups: ["automate"])
        #expect(unreachable.status == .exited(2) && unreachable.error.contains("Permission denied"), "\(unreachable.output)\(unreachable.error)")
        let refused = try await Self.call(deploymentSocket, deleteBackups, as: "automate-search", groups: ["automate", "automate-deployment"])
        #expect(refused.status == .exited(1))
        #expect(refused.output.hasPrefix("PERMISSION_DENIED \(deleteBackups) is not allowed for uid \(uids["automate-search"]!) (automate-search)"),
                "\(refused.output)\(refused.error)")
        let restoreRefused = try await Self.call(pgSidecarSocket, "Restore", as: "automate-notifications", groups: ["automate", "automate-pg-sidecar"])
        #expect(restoreRefused.output.hasPrefix("PERMISSION_DENIED Restore is not allowed for uid \(uids["notifications-service"]!) (automate-notifications)"),
                "\(restoreRefused.output)\(restoreRefused.error)")
        let log = try String(contentsOfFile: stack.home.logPath(service: "pg-sidecar-service"), encoding: .utf8)
        #expect(log.contains("Restore refused for uid \(uids["notifications-service"]!) (automate-notifications)"), "no log line for the refusal")

        // The same calls from allowed users pass the check (an empty request is then the only problem).
        for (user, groups) in [("automate-deployment", ["automate", "automate-pg-sidecar"]), ("automate-teams", ["automate", "automate-pg-sidecar"])] {
            let allowed = try await Self.call(pgSidecarSocket, "Restore", as: user, groups: groups)
            #expect(!allowed.output.hasPrefix("PERMISSION_DENIED") && !allowed.output.isEmpty, "\(user): \(allowed.output)\(allowed.error)")
        }
        // A client of the pg-sidecar acts for itself only: not for another service, not on the repository.
        let overAnother = try await Self.call(pgSidecarSocket, "Restore", Self.strings("20260101000000", "compliance-service"),
                                              as: "automate-teams", groups: ["automate", "automate-pg-sidecar"])
        #expect(overAnother.output.hasPrefix("PERMISSION_DENIED Restore for compliance-service is not allowed for teams-service"),
                "\(overAnother.output)\(overAnother.error)")
        let deleteRepo = try await Self.call(pgSidecarSocket, "DeleteRepo", Self.strings("", "2026"),
                                             as: "automate-teams", groups: ["automate", "automate-pg-sidecar"])
        #expect(deleteRepo.output.hasPrefix("PERMISSION_DENIED DeleteRepo is not allowed"), "\(deleteRepo.output)\(deleteRepo.error)")
        // The domain contract only from the deployment-service: teams may use the pg-sidecar, not ask compliance to restore.
        let contract = try await Self.call(run + "/compliance-service.sock", "automate.backup.v1.BackupService/Restore",
                                           as: "automate-teams", groups: ["automate", "automate-compliance"])
        #expect(contract.output.hasPrefix("PERMISSION_DENIED"), "\(contract.output)\(contract.error)")
        // Operators (root, through the CLI) may call the deployment-service.
        let list = try await stack.automate(["backup", "list"])
        #expect(list.succeeded, "\(list.error)")
    }

    /// The capability bounding set the generated `automate.service` declares, as `setpriv` takes it.
    static func unitBoundingSet(_ stack: TestStack) async throws -> String {
        let directory = stack.root + "/units"
        let install = try await stack.automate(["systemd", "install", "--unit-directory", directory])
        try #require(install.succeeded, "\(install.error)")
        let unit = try String(contentsOfFile: directory + "/automate.service", encoding: .utf8)
        let line = try #require(unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") })
        let capabilities = line.dropFirst("CapabilityBoundingSet=".count).split(separator: " ")
        #expect(capabilities.count >= 5 && capabilities.allSatisfy { $0.hasPrefix("CAP_") }, "\(line)")
        return "-all," + capabilities.map { "+" + $0.dropFirst("CAP_".count).lowercased() }.joined(separator: ",")
    }

    /// A normal user for the test below, and whether it can run this build (a clone under /root cannot).
    static let normalUser = "automate-test-operator"
    static func normalUserCanRunThisBuild() -> Bool {
        guard geteuid() == 0 else { return false }
        if (try? ServiceUser.named(normalUser)) == nil {
            let made = Process()
            made.executableURL = URL(fileURLWithPath: "/usr/sbin/useradd")
            made.arguments = ["--create-home", "--shell", "/bin/sh", normalUser]
            try? made.run()
            made.waitUntilExit()
        }
        guard let user = try? ServiceUser.named(normalUser) else { return false }
        return PathReach.problem(TestStack.binDirectory + "/automate-supervisor", for: user, need: .execute) == nil
            && PathReach.problem(TestStack.repository + "/hooks", for: user, need: .enter) == nil
    }

    @Test("as a normal user everything runs as that user: start, back up, stop; no secret in any environment",
          .enabled(if: normalUserCanRunThisBuild(), "needs root to make a normal user, and a build that user can reach (not under /root)"))
    func normalUser() async throws {
        let stack = try TestStack(name: "normal-user")
        defer { Task { await stack.tearDown() } }
        try stack.useFullStack()
        let user = try ServiceUser.named(Self.normalUser)
        for folder in [stack.home.path, stack.servicesDirectory, stack.hooksDirectory] {
            let owned = try await stack.shell("chown -R \(Self.normalUser): '\(folder)'")
            try #require(owned.succeeded, "\(owned.error)")
        }
        func automate(_ arguments: [String]) async throws -> CommandResult {
            let tools = ProcessInfo.processInfo.environment["AUTOMATE_TOOLS_DIR"] ?? "/opt/automate/venv/bin"
            return try await CommandResult.run("/usr/sbin/runuser", ["-u", Self.normalUser, "--", "/usr/bin/env",
                "AUTOMATE_HOME=\(stack.home.path)", "AUTOMATE_SERVICES_DIR=\(stack.servicesDirectory)",
                "AUTOMATE_HOOKS_DIR=\(stack.hooksDirectory)", "AUTOMATE_TOOLS_DIR=\(tools)", "PATH=\(tools):/usr/bin:/bin",
                TestStack.binDirectory + "/automate"] + arguments)
        }
        let start = try await automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        defer { Task { _ = try? await automate(["stop"]) } }
        let statuses = try await stack.status()
        #expect(statuses.count == TestStack.fullStackServices.count)
        for status in statuses {
            #expect(try Self.uid(of: status.pid) == user.uid, "\(status.name) does not run as \(Self.normalUser)")
        }
        var info = stat()
        #expect(stat(stack.home.runDirectory, &info) == 0 && info.st_mode & 0o7777 == 0o700)
        let secret = try String(contentsOfFile: stack.home.secretsDirectory + "/gateway.credentials", encoding: .utf8)
            .split(separator: "\"").dropFirst(3).first.map(String.init) ?? "missing"
        for status in statuses {
            let environ = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(status.pid)/environ"))
            #expect(environ.range(of: Data(secret.utf8)) == nil, "\(status.name)'s environment holds the gateway secret")
        }
        let backup = try await automate(["backup", "create", "--no-progress"])
        #expect(backup.succeeded && backup.output.hasPrefix("Created backup "), "\(backup.output)\(backup.error)")
        let stop = try await automate(["stop"])
        #expect(stop.succeeded, "\(stop.error)")
    }

    @Test("a home made when every service ran as `automate` moves to the new users on first start; its backup restores; all under the unit's capability bounding set")
    func upgradeFromOneUser() async throws {
        let stack = try TestStack(name: "upgrade-users")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack()
        stack.boundingSet = try await Self.unitBoundingSet(stack)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        // The supervisor really runs with the unit's bounding set.
        let supervisor = try #require(SupervisorLock.holder(path: stack.home.lockFilePath))
        let status = try String(contentsOfFile: "/proc/\(supervisor)/status", encoding: .utf8)
        let bounding = try #require(status.split(separator: "\n").first { $0.hasPrefix("CapBnd:") }?.split(separator: "\t").last)
        let mask = try #require(UInt64(bounding, radix: 16))
        #expect(mask.nonzeroBitCount == stack.boundingSet!.split(separator: ",").count - 1, "CapBnd \(bounding) for \(stack.boundingSet!)")
        try await stack.loadSampleData()
        let before = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        let id = try await stack.createBackup()
        let stop = try await stack.automate(["stop"])
        try #require(stop.succeeded, "\(stop.error)")

        // What the release before this one left: every data folder, the repository and the secrets
        // folder owned by the one user `automate`.
        _ = try await ServiceUsers.ensureSystemUser("automate", logger: .init(label: "test"))
        let home = stack.home
        let old = try await stack.shell(
            "chown -R automate:automate '\(home.dataDirectory)'/* '\(home.backupsDirectory)' '\(home.secretsDirectory)'")
        try #require(old.succeeded, "\(old.error)")

        let again = try await stack.automate(["start"])
        try #require(again.succeeded, "\(again.output)\(again.error)")
        for (folder, user) in [("postgresql", "automate-postgresql"), ("teams-service", "automate-teams"), ("search", "automate-search")] {
            let owners = try await stack.shell("find '\(home.dataDirectory)/\(folder)' -printf '%u\\n' | sort -u")
            #expect(owners.output == "\(user)\n", "\(folder) still holds files of \(owners.output)")
        }
        let repositoryOwners = try await stack.shell("find '\(home.backupsDirectory)' -printf '%u\\n' | sort -u")
        #expect(repositoryOwners.output == "automate-backup-gateway\n", "\(repositoryOwners.output)")
        let pgLog = try String(contentsOfFile: home.logPath(service: "automate-postgresql"), encoding: .utf8)
        #expect(pgLog.contains("moved \(home.dataDirectory)/postgresql") && pgLog.contains("from automate to automate-postgresql"), "\(pgLog.suffix(2000))")
        let afterUpgrade = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(afterUpgrade == before, "\(afterUpgrade.differences(from: before))")

        // The backup taken before the upgrade restores into a new home after it, from a copy owned by
        // root (as one brought from another machine would be): the restore gives it to the gateway.
        let repository = try await stack.copyRepositoryAndLoseHome(ports)
        let foreign = try await stack.shell("chown -R root:root '\(repository)' && chmod 700 '\(repository)'")
        try #require(foreign.succeeded, "\(foreign.error)")
        let restore = try await stack.automate(["restore", repository, id])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        #expect(restore.output.contains("Gave \(repository) ("), "\(restore.output)")
        let restoreID = try #require(RestoreTests.restoreID(in: restore.output))
        let final = try await RestoreTests.waitForLongTerm(stack, restoreID)
        #expect(final.longTermState == .completed, "\(final)")
        let afterRestore = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(afterRestore == before, "\(afterRestore.differences(from: before))")
    }
}
