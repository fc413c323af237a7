import AutomateSupervisor
import Foundation
import SidecarTestSupport
import Testing

/// The stack on PostgreSQL and search servers it does not run (`<home>/config/external.toml`): servers the
/// test starts itself, TLS with a CA made here, SCRAM only, non-default ports.
@Suite("External PostgreSQL and search clusters", .serialized)
struct ExternalServersTests {
    static var tools: String { ProcessInfo.processInfo.environment["AUTOMATE_TOOLS_DIR"] ?? "/opt/automate/venv/bin" }

    /// A full stack whose hooks include the external servers' watcher.
    static func fullStack(_ stack: TestStack) throws -> TestStack.Ports {
        let ports = try stack.useFullStack()
        try FileManager.default.copyItem(atPath: TestStack.repository + "/hooks/external", toPath: stack.hooksDirectory + "/external")
        return ports
    }

    /// Writes `<home>/config/external.toml` naming `pg` (verify-full against the test CA, the password in a
    /// 0600 file holding `password`, default the server's) and `search` when given.
    static func point(_ stack: TestStack, at pg: ExternalPostgres, search: ExternalSearch?, password: String? = nil, tag: String) throws {
        let secrets = stack.root + "/operator-secrets"
        try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let passwordFile = secrets + "/pg-password-\(tag)"
        try (password ?? pg.password).write(toFile: passwordFile, atomically: true, encoding: .utf8)
        chmod(passwordFile, 0o600)
        var text = """
            [postgresql]
            host = "localhost"
            port = \(pg.port)
            user = "\(pg.user)"
            password_file = "\(passwordFile)"
            ca_file = "\(pg.authority.certificate)"
            sslmode = "verify-full"

            """
        if let search { text += "\n[search]\nurl = \"\(search.url)\"\n" }
        try FileManager.default.createDirectory(atPath: stack.home.configDirectory, withIntermediateDirectories: true)
        try text.write(toFile: stack.home.externalSettingsPath, atomically: true, encoding: .utf8)
    }

    @Test("a stack on an external PostgreSQL (TLS, SCRAM) and search engine: backup, then restore into second, empty ones; every table and document equal")
    func roundTrip() async throws {
        let stack = try TestStack(name: "external-trip")
        let ca = try TestCertificateAuthority(folder: stack.root + "/ca", name: "automate-test-ca")
        let first = try await ExternalPostgres(folder: stack.root + "/pg-first", authority: ca, password: "first secret: it's long")
        let firstSearch = try await ExternalSearch(tools: Self.tools)
        // The second machine's servers, empty until the restore.
        let secondServer = try await ExternalPostgres(folder: stack.root + "/pg-second", authority: ca, password: "second")
        let secondEngine = try await ExternalSearch(tools: Self.tools)
        defer {
            Task {
                await stack.tearDown()
                for pg in [first, secondServer] { pg.stop() }
                for engine in [firstSearch, secondEngine] { engine.stop() }
            }
        }
        let ports = try Self.fullStack(stack)
        try Self.point(stack, at: first, search: firstSearch, tag: "first")
        // The gateway's TLS listener, for a cluster on another machine (the key readable by the gateway's
        // user, which the first start makes: world-readable in this throw-away folder).
        let gatewayTLS = try ca.issueServerCertificate(folder: stack.root + "/ca", prefix: "gateway")
        chmod(gatewayTLS.key, 0o644)
        let tlsPort = Fixture.freePort()
        try stack.writeOverlay("backup-gateway", """
            [config]
            port = \(ports.gateway)
            tls_listen = "127.0.0.1:\(tlsPort)"
            tls_certificate = "\(gatewayTLS.certificate)"
            tls_key = "\(gatewayTLS.key)"
            """)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        let overTLS = try await stack.shell("curl -fsS --cacert '\(ca.certificate)' https://localhost:\(tlsPort)/healthz")
        #expect(overTLS.succeeded, "\(overTLS.output)\(overTLS.error)")

        // The watchers say what they reached; neither server of the stack's own was launched.
        let status = try await stack.status()
        let pg = try #require(status.first { $0.name == "automate-postgresql" })
        #expect(pg.state == "running" && pg.healthMessage.contains("PostgreSQL 15") && pg.healthMessage.contains("localhost:\(first.port)")
                && pg.healthMessage.contains("verified (verify-full)"), "\(pg)")
        let search = try #require(status.first { $0.name == "automate-search" })
        #expect(search.state == "running" && search.healthMessage.contains(firstSearch.url), "\(search)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.dataDirectory + "/postgresql/PG_VERSION"))
        let shown = try await stack.automate(["status"])
        #expect(shown.output.contains("localhost:\(first.port)"), "\(shown.output)")
        // Each service's copy of the password is its own, 0400.
        var info = stat()
        #expect(stat(stack.home.secretsDirectory + "/teams-service.pgpass", &info) == 0 && info.st_mode & 0o777 == 0o400)

        try await stack.loadSampleData()
        #expect(try await first.psql("teams_service", "SELECT count(*) FROM teams") == "2")
        #expect(try await first.psql("notifications_service", "SELECT count(*) FROM outbox") == "2")
        let before = try await StackSnapshot.take(stack, searchPort: "\(firstSearch.port)")
        #expect(before.documents.count == 3)

        let id = try await stack.createBackup()
        let repository = try await stack.copyRepositoryAndLoseHome(ports)

        // A new machine pointed at a second server, which already has a teams_service with a table.
        try await secondServer.psql("postgres", "CREATE DATABASE teams_service")
        try await secondServer.psql("teams_service", "CREATE TABLE leftover (id int)")
        try Self.point(stack, at: secondServer, search: secondEngine, tag: "second")
        let refused = try await stack.automate(["restore", repository, id])
        #expect(refused.status == .exited(2) && refused.error.contains("already holds data in teams_service (1 table)")
                && refused.error.contains("--force") && refused.error.contains("nothing was changed"), "\(refused.output)\(refused.error)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.dataDirectory))
        #expect(try await secondServer.psql("teams_service", "SELECT count(*) FROM leftover") == "0")

        let restore = try await stack.automate(["restore", repository, id, "--force"])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        let restoreID = try #require(RestoreTests.restoreID(in: restore.output))
        let final = try await RestoreTests.waitForLongTerm(stack, restoreID)
        #expect(final.longTermState == .completed, "\(final)")
        let after = try await StackSnapshot.take(stack, searchPort: "\(secondEngine.port)")
        #expect(after == before, "\(after.differences(from: before))")
        #expect(try await secondServer.psql("teams_service", "SELECT count(*) FROM teams") == "2")
        #expect(try await secondServer.psql("teams_service", "SELECT count(*) FROM pg_class WHERE relname = 'leftover'") == "0")
    }

    @Test("a wrong password, a certificate from another CA, a stopped server: one line naming each, dependents wait, nothing crash-loops, healthy once fixed")
    func failures() async throws {
        let stack = try TestStack(name: "external-faults")
        let ca = try TestCertificateAuthority(folder: stack.root + "/ca", name: "automate-test-ca")
        let other = try TestCertificateAuthority(folder: stack.root + "/other-ca", name: "another-ca")
        let server = try await ExternalPostgres(folder: stack.root + "/pg", authority: ca, password: "the right one")
        defer { Task { await stack.tearDown(); server.stop() } }
        try Self.fullStack(stack)

        // Settings that do not parse: refused before anything starts, naming file, line and key.
        try FileManager.default.createDirectory(atPath: stack.home.configDirectory, withIntermediateDirectories: true)
        try "[postgresql]\nhost = \"localhost\"\nport = \"five\"\nuser = \"automate\"\npassword_file = \"relative\"\n"
            .write(toFile: stack.home.externalSettingsPath, atomically: true, encoding: .utf8)
        let bad = try await stack.automate(["start", "--timeout", "10"])
        #expect(!bad.succeeded && bad.error.contains("external.toml:3: postgresql.port: expected an integer")
                && bad.error.contains("external.toml:5: postgresql.password_file: \"relative\" must be an absolute path"), "\(bad.output)\(bad.error)")

        try Self.point(stack, at: server, search: nil, password: "the wrong one", tag: "a")
        let start = try await stack.automate(["start", "--timeout", "15"])
        #expect(!start.succeeded && start.error.contains("automate-postgresql") && start.error.contains("refused the password of user automate"),
                "\(start.output)\(start.error)")
        let waiting = try await stack.status()
        for name in ["teams-service", "compliance-service", "pg-sidecar-service", "notifications-service"] {
            #expect(waiting.first { $0.name == name }?.state == "waiting", "\(name): \(String(describing: waiting.first { $0.name == name }))")
        }
        #expect(waiting.allSatisfy { $0.restarts == 0 }, "\(waiting.map { "\($0.name) \($0.restarts)" })")
        let shown = try await stack.automate(["status"])
        #expect(shown.output.contains("authentication: PostgreSQL at localhost:\(server.port) refused the password"), "\(shown.output)")

        // The server is fixed (it now takes the password the stack has): everything comes up.
        try await server.changePassword(to: "the wrong one")
        for name in TestStack.fullStackServices {
            try await stack.waitFor(name, within: .seconds(90)) { $0.state == "running" }
        }

        // A certificate signed by another CA: the watcher says so; the services already connected keep running.
        try await server.useCertificate(from: other, prefix: "impostor")
        let untrusted = try await stack.waitFor("automate-postgresql", within: .seconds(60)) { $0.state == "unhealthy" }
        #expect(untrusted.healthMessage.hasPrefix("TLS: the certificate of PostgreSQL at localhost:\(server.port) is not signed by the CA in ca_file"),
                "\(untrusted.healthMessage)")
        try await server.useCertificate(from: ca, prefix: "renewed")
        try await stack.waitFor("automate-postgresql", within: .seconds(60)) { $0.state == "running" }

        // A stopped server: unreachable, said so; back when it is.
        server.stop()
        let down = try await stack.waitFor("automate-postgresql", within: .seconds(60)) { $0.state == "unhealthy" }
        #expect(down.healthMessage.hasPrefix("unreachable: cannot reach PostgreSQL at localhost:\(server.port)"), "\(down.healthMessage)")
        try await server.start()
        try await stack.waitFor("automate-postgresql", within: .seconds(60)) { $0.state == "running" }
        let after = try await stack.status()
        #expect(after.allSatisfy { $0.restarts == 0 && $0.state == "running" }, "\(after.map { "\($0.name) \($0.state) \($0.restarts)" })")
        let teams = try await stack.automate(["teams", "add", "after-the-outage"])
        #expect(teams.succeeded, "\(teams.output)\(teams.error)")
        #expect(try await server.psql("teams_service", "SELECT count(*) FROM teams") == "1")
    }

    @Test("notifications-service started while its database is down waits for it (no exit, no crash loop), then delivers")
    func serviceWaitsForItsDatabase() async throws {
        let root = try Fixture.makeTempDir("notifications-waits")
        let ca = try TestCertificateAuthority(folder: root + "/ca", name: "automate-test-ca")
        let server = try await ExternalPostgres(folder: root + "/pg", authority: ca, password: "secret")
        server.stop()
        defer { server.stop(); try? FileManager.default.removeItem(atPath: root) }
        for folder in ["data", "run"] { try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true) }
        let out = root + "/stdout", err = root + "/stderr"
        let outFD = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o644), errFD = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(outFD); close(errFD) }
        var options = ChildProcess.Options(
            executable: "/usr/bin/python3", arguments: [TestStack.repository + "/hooks/notifications-service/notifications_service.py"],
            environment: ProcessInfo.processInfo.environment.merging([
                "AUTOMATE_SERVICE_DATA": root + "/data", "AUTOMATE_RUN_DIR": root + "/run",
                "AUTOMATE_CFG_PG_HOST": "localhost", "AUTOMATE_CFG_PG_PORT": "\(server.port)", "AUTOMATE_CFG_PG_USER": server.user,
                "AUTOMATE_CFG_POLL_SECONDS": "0.2", "PGPASSWORD": "secret", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": ca.certificate,
            ]) { $1 })
        options.standardOutput = outFD
        options.standardError = errFD
        // The supervisor's own spawn: a clean signal mask (Foundation's Process passes on the test's).
        let service = try ChildProcess.spawn(options)
        defer { service.signalGroup(SIGKILL); service.forget() }
        func running() async -> Bool { await service.waitForExit(timeout: .zero) == nil }
        func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

        // Three refused attempts, and still running.
        try Fixture.waitFor("three retries in \(err)", timeout: 30) {
            read(err).components(separatedBy: "not ready, retrying in 0.2s").count > 3
        }
        try #require(await running(), "it exited: \(read(err))")
        #expect(read(err).contains("Connection refused"), "\(read(err))")

        try await server.start()
        try Fixture.waitFor("delivering in \(out)", timeout: 30) { read(out).contains("notifications-service: delivering from") }
        try await server.psql("notifications_service", "INSERT INTO outbox (message) VALUES ('after the wait')")
        try Fixture.waitFor("the delivery", timeout: 30) { read(root + "/data/deliveries.log").contains("after the wait") }
        service.signalGroup(SIGTERM)
        let exit = await service.waitForExit(timeout: .seconds(10))
        #expect(exit == .exited(0) && read(out).hasSuffix("notifications-service: stopped\n"), "\(String(describing: exit)) \(read(out))")
        // One line per message delivered, nothing else.
        #expect(read(root + "/data/deliveries.log") == "[notify] 1 after the wait\n", "\(read(root + "/data/deliveries.log"))")
    }

    @Test("a client certificate instead of a password: the services, the watcher and automate psql all connect with it")
    func clientCertificate() async throws {
        let stack = try TestStack(name: "external-cert")
        let ca = try TestCertificateAuthority(folder: stack.root + "/ca", name: "automate-test-ca")
        let server = try await ExternalPostgres(folder: stack.root + "/pg", authority: ca, password: "the server's own", clientCertificates: true)
        defer { Task { await stack.tearDown(); server.stop() } }
        try Self.fullStack(stack)
        let secrets = stack.root + "/operator-secrets"
        try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let client = try ca.issueClientCertificate(folder: secrets, prefix: "pg-client", commonName: server.user)
        try FileManager.default.createDirectory(atPath: stack.home.configDirectory, withIntermediateDirectories: true)
        try """
            [postgresql]
            host = "localhost"
            port = \(server.port)
            user = "\(server.user)"
            cert_file = "\(client.certificate)"
            key_file = "\(client.key)"
            ca_file = "\(ca.certificate)"
            """.write(toFile: stack.home.externalSettingsPath, atomically: true, encoding: .utf8)
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        let pg = try #require(try await stack.status().first { $0.name == "automate-postgresql" })
        #expect(pg.healthMessage.contains("verified (verify-full)"), "\(pg.healthMessage)")
        // Each service's copy of the key is its own, 0400 (libpq refuses a key others may read).
        var info = stat()
        #expect(stat(stack.home.secretsDirectory + "/teams-service.pg-client.key", &info) == 0 && info.st_mode & 0o777 == 0o400)
        let added = try await stack.automate(["teams", "add", "certified"])
        #expect(added.succeeded, "\(added.output)\(added.error)")
        #expect(try await server.psql("teams_service", "SELECT name FROM teams") == "certified")
        let psql = try await stack.automate(["psql", "teams_service", "--", "-AtXq", "-c", "SELECT count(*) FROM teams"])
        #expect(psql.succeeded && psql.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(psql.output)\(psql.error)")
    }
}
