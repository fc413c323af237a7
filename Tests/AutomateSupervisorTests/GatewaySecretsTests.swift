import AutomateSupervisor
import Foundation
import SidecarTestSupport
import Testing

/// The secrets helper and the gateway as a supervised service, with the real aws CLI.
@Suite("Gateway key pair", .serialized)
struct GatewaySecretsTests {
    private func aws() throws -> String {
        let tools = ProcessInfo.processInfo.environment["AUTOMATE_TOOLS_DIR"] ?? "/opt/automate/venv/bin"
        let path = tools + "/aws"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("\(path) is missing: run scripts/install.sh --deps (or set AUTOMATE_TOOLS_DIR)")
        }
        return path
    }

    private func awsRun(_ arguments: [String], id: String, secret: String, endpoint: String) async throws -> CommandResult {
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = id
        environment["AWS_SECRET_ACCESS_KEY"] = secret
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        return try await CommandResult.run(try aws(), arguments + ["--endpoint-url", endpoint], environment: environment)
    }

    @Test("made on first start (0600), handed only to gateway users as a file of their own, never an environment, rotated on request")
    func keyPairLifecycle() async throws {
        let stack = try TestStack(name: "secrets")
        defer { Task { await stack.tearDown() } }
        try stack.useRepositoryService("backup-gateway")
        try stack.writeOverlay("backup-gateway", "[config]\nport = \(Fixture.freePort())\n")
        let envDump = stack.root + "/env-"
        for (name, allowed) in [("user-with-access", true), ("user-without-access", false)] {
            try stack.writeManifest(name, """
                [service]
                name = "\(name)"
                command = ["/bin/sh", "-c", "env > \(envDump)\(name); exec sleep 1000"]
                [backup]
                gateway = \(allowed)
                """)
        }
        let start = try await stack.automate(["start", "--timeout", "60"])
        try #require(start.succeeded, "\(stack.failure(start))")

        let file = stack.home.secretsDirectory + "/gateway.credentials"
        let asRoot = geteuid() == 0
        var info = stat()
        #expect(stat(file, &info) == 0 && info.st_mode & 0o777 == 0o600)
        if asRoot { #expect(info.st_uid == (try ServiceUser.named("automate-backup-gateway")).uid) }
        // Root's folder: service users reach their own file by name, none lists the others.
        #expect(stat(stack.home.secretsDirectory, &info) == 0 && info.st_mode & 0o777 == (asRoot ? 0o711 : 0o700))

        let printed = try await stack.automate(["gateway", "credentials"])
        try #require(printed.succeeded, "\(printed.error)")
        func value(_ key: String, in text: String) -> String? {
            text.split(separator: "\n").first { $0.hasPrefix("export \(key)=") }.map { String($0.dropFirst("export \(key)=".count)) }
        }
        let id = try #require(value("AWS_ACCESS_KEY_ID", in: printed.output))
        let secret = try #require(value("AWS_SECRET_ACCESS_KEY", in: printed.output))
        let endpoint = try #require(value("AWS_ENDPOINT_URL", in: printed.output))
        #expect(id.hasPrefix("AKAT") && id.count == 20 && secret.count == 40)

        let withAccess = try String(contentsOfFile: envDump + "user-with-access", encoding: .utf8)
        let withoutAccess = try String(contentsOfFile: envDump + "user-without-access", encoding: .utf8)
        #expect(withAccess.contains("AUTOMATE_GATEWAY_ENDPOINT=\(endpoint)"))
        #expect(!withoutAccess.contains("AUTOMATE_GATEWAY"), "a service without [backup] gateway = true got gateway settings")
        // The pair is in a file only the service's user reads, in no environment.
        let keyFile = stack.home.secretsDirectory + "/user-with-access.gateway.credentials"
        #expect(withAccess.contains("AUTOMATE_GATEWAY_CREDENTIALS_FILE=\(keyFile)"))
        #expect(try String(contentsOfFile: keyFile, encoding: .utf8).contains(secret))
        #expect(stat(keyFile, &info) == 0 && info.st_mode & 0o777 == 0o400)
        for status in try await stack.status() where status.pid > 0 {
            let environ = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(status.pid)/environ"))
            #expect(environ.range(of: Data(secret.utf8)) == nil, "\(status.name)'s /proc/\(status.pid)/environ holds the secret")
        }
        if asRoot {
            #expect(info.st_uid == (try ServiceUser.named("automate-user-with-access")).uid)
            let mine = try await CommandResult.run("/usr/sbin/runuser", ["-u", "automate-user-with-access", "--", "cat", keyFile])
            #expect(mine.succeeded && mine.output.contains(secret), "\(mine.error)")
            for other in ["automate-user-without-access", "automate-backup-gateway"] {
                let denied = try await CommandResult.run("/usr/sbin/runuser", ["-u", other, "--", "cat", keyFile])
                #expect(!denied.succeeded && denied.error.contains("Permission denied"), "\(other) read the key file: \(denied.output)")
            }
            let gatewayFile = try await CommandResult.run("/usr/sbin/runuser", ["-u", "automate-user-without-access", "--", "cat", file])
            #expect(!gatewayFile.succeeded, "a service user read the gateway's own key file")
        }

        // The pair works against the real gateway; a file copied into the repository reads back.
        let local = stack.root + "/hello.txt"
        try "hello gateway\n".write(toFile: local, atomically: true, encoding: .utf8)
        let put = try await awsRun(["s3", "cp", local, "s3://backups/probe/hello.txt"], id: id, secret: secret, endpoint: endpoint)
        #expect(put.succeeded, "\(put.error)")
        #expect(try String(contentsOfFile: stack.home.backupsDirectory + "/probe/hello.txt", encoding: .utf8) == "hello gateway\n")

        let rotate = try await stack.automate(["gateway", "rotate-credentials"])
        #expect(rotate.succeeded, "\(rotate.error)")
        #expect(rotate.output.contains("backup-gateway") && rotate.output.contains("user-with-access"))
        #expect(!rotate.output.contains("user-without-access"))
        _ = try await stack.waitFor("backup-gateway") { $0.state == "running" }
        let after = try await stack.automate(["gateway", "credentials"])
        let newID = try #require(value("AWS_ACCESS_KEY_ID", in: after.output))
        let newSecret = try #require(value("AWS_SECRET_ACCESS_KEY", in: after.output))
        #expect(newID != id)
        _ = try await stack.waitFor("user-with-access") { $0.state == "running" }
        #expect(try String(contentsOfFile: keyFile, encoding: .utf8).contains(newSecret), "the user's copy follows the rotation")
        let old = try await awsRun(["s3", "ls", "s3://backups/"], id: id, secret: secret, endpoint: endpoint)
        #expect(!old.succeeded)
        #expect(old.error.contains("InvalidAccessKeyId"), "\(old.error)")
        let fresh = try await awsRun(["s3", "ls", "s3://backups/probe/"], id: newID, secret: newSecret, endpoint: endpoint)
        #expect(fresh.succeeded, "\(fresh.error)")
        #expect(fresh.output.contains("hello.txt"))
    }
}
