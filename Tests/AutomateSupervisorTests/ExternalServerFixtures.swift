import Foundation
import SidecarTestSupport

/// A PostgreSQL 15 server that the test runs itself, outside any supervisor, as an operator's external
/// server would be: its own initdb, TLS only (a certificate from a test CA), `scram-sha-256` only, a
/// non-default port on loopback. Run as the `automate` user when the tests run as root (initdb refuses
/// root).
final class ExternalPostgres: @unchecked Sendable {
    static let bindir = "/usr/lib/postgresql/15/bin"
    let folder: String
    let port = Fixture.freePort()
    let user = "automate"
    /// The role's password on the server.
    private(set) var password: String
    let authority: TestCertificateAuthority
    private var process: Process?

    var data: String { folder + "/data" }

    /// Makes the cluster in `folder` (initdb, TLS settings, pg_hba) and starts it. `clientCertificates`:
    /// TCP clients authenticate with a certificate from `authority` (PostgreSQL's `cert` method) instead of
    /// a password.
    init(folder: String, authority: TestCertificateAuthority, password: String, clientCertificates: Bool = false) async throws {
        self.folder = folder
        self.authority = authority
        self.password = password
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let pwfile = folder + "/initial-password"
        try password.write(toFile: pwfile, atomically: true, encoding: .utf8)
        let tls = try authority.issueServerCertificate(folder: folder, prefix: "server")
        try await run("chown -R automate: '\(folder)' && chmod 0700 '\(folder)' && chmod 0600 '\(tls.key)'", asRoot: true)
        try await run("'\(Self.bindir)/initdb' -D '\(data)' -U \(user) --auth=scram-sha-256 --pwfile='\(pwfile)' -E UTF8 --locale=C.UTF-8 --no-sync")
        let conf = """
            listen_addresses = '127.0.0.1'
            port = \(port)
            unix_socket_directories = '\(folder)'
            ssl = on
            ssl_cert_file = '\(tls.certificate)'
            ssl_key_file = '\(tls.key)'
            password_encryption = 'scram-sha-256'
            ssl_ca_file = '\(authority.certificate)'
            fsync = off
            full_page_writes = off
            synchronous_commit = off
            """
        try await run("cat >> '\(data)/postgresql.conf' <<'EOF'\n\(conf)\nEOF")
        // TLS and SCRAM only: no trust, no peer, no plain TCP.
        let hba = """
            local all all scram-sha-256
            hostssl all all 127.0.0.1/32 \(clientCertificates ? "cert" : "scram-sha-256")
            hostnossl all all 0.0.0.0/0 reject
            """
        try await run("printf '%s\\n' '\(hba.replacingOccurrences(of: "\n", with: "' '"))' > '\(data)/pg_hba.conf'")
        try await start()
    }

    /// Runs `script` as `automate` (as root: the server's user) or as is.
    @discardableResult
    private func run(_ script: String, asRoot: Bool = false) async throws -> CommandResult {
        let command = getuid() == 0 && !asRoot
            ? "setpriv --reuid=automate --regid=automate --init-groups /bin/sh -c \(Self.quote(script))" : script
        let r = try await TestStack.shellCommand(command)
        guard r.succeeded else { throw TestFailure("\(script): \(r.output)\(r.error)") }
        return r
    }

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    /// Starts the server and waits until it accepts connections.
    func start() async throws {
        let p = Process()
        if getuid() == 0 {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = ["--reuid=automate", "--regid=automate", "--init-groups", Self.bindir + "/postgres", "-D", data]
        } else {
            p.executableURL = URL(fileURLWithPath: Self.bindir + "/postgres")
            p.arguments = ["-D", data]
        }
        p.standardOutput = FileHandle.nullDevice
        let log = folder + "/server.log"
        if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = FileHandle(forWritingAtPath: log)
        handle?.seekToEndOfFile()
        p.standardError = handle ?? FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let ready = try await TestStack.shellCommand("'\(Self.bindir)/pg_isready' -q -h 127.0.0.1 -p \(port)")
            if ready.succeeded { return }
            guard p.isRunning else { throw TestFailure("the external PostgreSQL on port \(port) exited; see \(folder)/server.log") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("the external PostgreSQL on port \(port) did not accept connections within 30 s")
    }

    /// Stops the server (fast shutdown) and waits for it.
    func stop() {
        guard let p = process else { return }
        if p.isRunning { kill(p.processIdentifier, SIGINT) }
        p.waitUntilExit()
        process = nil
    }

    /// Re-reads the configuration and the TLS files (SIGHUP).
    func reload() {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGHUP) }
    }

    /// psql as the superuser on the server's own socket (the password), whatever TCP clients must show;
    /// returns its output, trimmed.
    @discardableResult
    func psql(_ database: String, _ sql: String) async throws -> String {
        let script = "PGPASSWORD=\(Self.quote(password)) "
            + "'\(Self.bindir)/psql' -X -q -At -v ON_ERROR_STOP=1 -h '\(folder)' -p \(port) -U \(user) -d \(database) -c \(Self.quote(sql))"
        let r = try await TestStack.shellCommand(script)
        guard r.succeeded else { throw TestFailure("psql \(database) -c \(sql): \(r.output)\(r.error)") }
        return r.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Changes the role's password on the server.
    func changePassword(to new: String) async throws {
        try await psql("postgres", "ALTER ROLE \(user) PASSWORD '\(new)'")
        password = new
    }

    /// Swaps the server's certificate and key for ones `authority` signed, and reloads.
    func useCertificate(from authority: TestCertificateAuthority, prefix: String) async throws {
        let tls = try authority.issueServerCertificate(folder: folder, prefix: prefix)
        try await run("chown automate: '\(tls.certificate)' '\(tls.key)' && chmod 0600 '\(tls.key)'", asRoot: true)
        try await run("sed -i -e \"s|^ssl_cert_file = .*|ssl_cert_file = '\(tls.certificate)'|\" -e \"s|^ssl_key_file = .*|ssl_key_file = '\(tls.key)'|\" '\(data)/postgresql.conf'")
        reload()
    }
}

/// An osmem-server the test runs itself, as an operator's external search cluster.
final class ExternalSearch: @unchecked Sendable {
    let port = Fixture.freePort()
    private let process = Process()
    var url: String { "http://127.0.0.1:\(port)" }

    init(tools: String) async throws {
        process.executableURL = URL(fileURLWithPath: tools + "/osmem-server")
        process.arguments = ["-addr", "127.0.0.1:\(port)", "-no-stdin-watch"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if try await TestStack.shellCommand("curl -fsS -o /dev/null '\(url)/'").succeeded { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("osmem-server on port \(port) did not answer within 30 s")
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
    }
}
