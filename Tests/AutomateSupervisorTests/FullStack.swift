import AutomateRPC
import AutomateSupervisor
import BackupContract
import Foundation
import SidecarTestSupport

/// The whole repository stack in a TestStack: PostgreSQL, search, gateway, sidecars, deployment-service
/// and the three reference services, each on free loopback ports.
extension TestStack {
    static let fullStackServices = [
        "automate-postgresql", "automate-search", "backup-gateway", "pg-sidecar-service", "es-sidecar-service",
        "deployment-service", "teams-service", "compliance-service", "notifications-service",
    ]

    /// The loopback ports of a full stack.
    struct Ports: Sendable {
        var postgres = Fixture.freePort()
        var search = Fixture.freePort()
        var gateway = Fixture.freePort()
        /// The format a new repository gets (`[config] repository_format` of the deployment-service):
        /// plain for the tests that read its files with plain tools, chunked for the chunked format's.
        var repositoryFormat = "plain"
        /// WAL archiving (and so base backups) of the stack's PostgreSQL, on as shipped: in the tests of
        /// point-in-time recovery and of the backup and restore flows with it; off elsewhere (every segment
        /// and base backup is chunked and encrypted by a debug build, which loads the machine that the
        /// timing-sensitive suites share).
        var archiving = false
    }

    /// Copies every repository service and writes overlays so that they find each other on free ports.
    @discardableResult
    func useFullStack(repositoryFormat: String = "plain", archiving: Bool = false) throws -> Ports {
        for service in Self.fullStackServices { try useRepositoryService(service) }
        var ports = Ports()
        ports.repositoryFormat = repositoryFormat
        ports.archiving = archiving
        try writeOverlays(ports)
        return ports
    }

    /// The operator's configuration of a full stack (`<home>/config/*.toml`).
    func writeOverlays(_ ports: Ports) throws {
        let pg = ports.postgres, search = ports.search
        try writeOverlay("automate-postgresql", "[config]\nport = \(pg)\n" + (ports.archiving ? "" : "archive_mode = \"off\"\n"))
        for service in ["pg-sidecar-service", "teams-service", "notifications-service"] {
            try writeOverlay(service, "[config]\npg_port = \(pg)\n")
        }
        try writeOverlay("compliance-service", "[config]\npg_port = \(pg)\nsearch_url = \"http://127.0.0.1:\(search)\"\n")
        try writeOverlay("automate-search", "[config]\nport = \(search)\n")
        try writeOverlay("es-sidecar-service", "[config]\nsearch_url = \"http://127.0.0.1:\(search)\"\n")
        try writeOverlay("backup-gateway", "[config]\nport = \(ports.gateway)\n")
        try writeOverlay("deployment-service", "[config]\nrepository_format = \"\(ports.repositoryFormat)\"\n")
    }

    /// The deployment-service's client.
    func deployment() async throws -> RPCClient {
        try await RPCClient.connect(socketPath: home.runDirectory + "/deployment-service.sock")
    }

    /// Starts a backup through the deployment-service and returns its id.
    func startBackup() async throws -> String {
        let client = try await deployment()
        defer { Task { await client.close() } }
        return try await client.call(DeploymentService.createBackup, Automate_Deployment_V1_CreateStackBackupRequest()).backupID
    }

    /// Follows a backup until `predicate` holds (returns that status) or it ends (returns the last).
    func watchBackup(_ id: String, until predicate: @escaping @Sendable (StackBackup) -> Bool = { _ in false }) async throws -> StackBackup {
        let client = try await deployment()
        defer { Task { await client.close() } }
        var request = Automate_Deployment_V1_StackBackupRequest()
        request.backupID = id
        var last = StackBackup()
        for try await s in client.stream(DeploymentService.watchBackup, request, timeout: .seconds(300)) {
            last = s
            if predicate(s) { return s }
        }
        return last
    }

    /// `automate backup create --no-progress`, which must succeed; returns the backup id it printed.
    func createBackup() async throws -> String {
        let create = try await automate(["backup", "create", "--no-progress"])
        guard create.succeeded, create.output.hasPrefix("Created backup ") else {
            throw TestFailure("automate backup create: \(create.status) \(create.output)\(create.error)")
        }
        return String(create.output.split(separator: " ")[2])
    }

    /// Copies the stack's repository to `<root>/repository-copy` (as an operator would before losing the
    /// machine), then loses the home (``loseHome(_:)``); returns the copy's path.
    func copyRepositoryAndLoseHome(_ ports: Ports) async throws -> String {
        let copy = root + "/repository-copy"
        let copied = try await shell("cp -a '\(home.backupsDirectory)' '\(copy)'")
        guard copied.succeeded else { throw TestFailure("copying the repository: \(copied.output)\(copied.error)") }
        try await loseHome(ports)
        return copy
    }

    /// The last lines of the logs of the services a failed command names as not coming up ("X did not
    /// come up", "X failed: ...", "see `automate logs X`"), for the failure's message: the home goes with
    /// the test.
    private func logsOfServicesThatFailed(_ result: CommandResult, lines: Int = 30) -> String {
        let text = result.output + result.error
        var names: [String] = []
        for pattern in [/([A-Za-z0-9-]+) did not come up/, /automate logs ([A-Za-z0-9-]+)/] {
            for match in text.matches(of: pattern) where !names.contains(String(match.1)) { names.append(String(match.1)) }
        }
        var report = ""
        for name in names {
            let path = home.logPath(service: name)
            guard let log = try? String(contentsOfFile: path, encoding: .utf8) else {
                report += "\n(no log at \(path))"
                continue
            }
            report += "\n--- the last \(lines) lines of \(path):\n" + log.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }
        return report
    }

    /// What a failed command printed, then the end of the log of each service it names as failed.
    func failure(_ result: CommandResult) -> String {
        result.output + result.error + logsOfServicesThatFailed(result)
    }

    /// Stops the stack and deletes its whole home, then writes the operator's overlays back (the
    /// configuration of a new machine, which a backup does not hold).
    func loseHome(_ ports: Ports) async throws {
        let stop = try await automate(["stop"])
        guard stop.succeeded else { throw TestFailure("automate stop: \(stop.output)\(stop.error)") }
        try FileManager.default.removeItem(atPath: home.path)
        try writeOverlays(ports)
    }

    /// The pid of a running service.
    func pid(of service: String) async throws -> pid_t {
        guard let s = try await status().first(where: { $0.name == service }), s.pid > 0 else {
            throw TestFailure("\(service) is not running")
        }
        return s.pid
    }

    /// `/bin/sh -c <script>` with the test's environment.
    @discardableResult
    static func shellCommand(_ script: String) async throws -> CommandResult {
        try await CommandResult.run("/bin/sh", ["-c", script], environment: ProcessInfo.processInfo.environment)
    }

    /// `/bin/sh -c <script>` with this stack's environment.
    @discardableResult
    func shell(_ script: String) async throws -> CommandResult {
        var environment = ProcessInfo.processInfo.environment
        environment["AUTOMATE_HOME"] = home.path
        environment["AUTOMATE_SERVICES_DIR"] = servicesDirectory
        environment["AUTOMATE_HOOKS_DIR"] = hooksDirectory
        environment["PATH"] = Self.binDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        return try await CommandResult.run("/bin/sh", ["-c", script], environment: environment)
    }

    /// Puts data in every kind of service: teams, compliance reports (database + search), profiles
    /// (files), notifications (a database and a config folder of a service without the contract). The
    /// notifications are already delivered, so the service leaves them as they are while the test compares.
    func loadSampleData() async throws {
        for args in [
            ["teams", "add", "core", "--member", "alice", "--member", "bob", "--description", "the core team"],
            ["teams", "add", "infra", "--member", "carol"],
            ["compliance", "report", "node-1", "passed", "--summary", "ssh hardening applied"],
            ["compliance", "report", "node-2", "failed", "--summary", "kernel too old"],
            ["compliance", "report", "node-3", "skipped", "--summary", "offline during the scan"],
            ["psql", "notifications_service", "--", "-c", "INSERT INTO outbox (message, delivered_at) VALUES ('first', now()), ('second', now())"],
        ] {
            let r = try await automate(args)
            guard r.succeeded else { throw TestFailure("automate \(args.joined(separator: " ")): \(r.output)\(r.error)") }
        }
        let profile = root + "/linux-baseline.yml"
        try String(repeating: "control: ssh-01\n", count: 500).write(toFile: profile, atomically: true, encoding: .utf8)
        let r = try await automate(["compliance", "upload-profile", profile])
        guard r.succeeded else { throw TestFailure("upload-profile: \(r.error)") }
    }

    /// Enough data that a backup takes a few seconds: a ~100 MB table and a file of `fileMiB` MiB (random:
    /// the archive moves every byte). Tests that kill a service while its archive moves want the archive
    /// to outlast the status stream's reports by a margin: give them more.
    func loadBulkData(fileMiB: Int = 192) async throws {
        let r = try await automate(["psql", "teams_service", "--", "-c",
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 1200000) g"])
        guard r.succeeded else { throw TestFailure("bulk table: \(r.error)") }
        let profiles = home.dataDirectory + "/compliance-service/profiles"
        let f = try await shell("head -c \(fileMiB)M /dev/urandom > '\(profiles)/bulk.bin' && chmod 644 '\(profiles)/bulk.bin'")
        guard f.succeeded else { throw TestFailure("bulk file: \(f.error)") }
    }
}
