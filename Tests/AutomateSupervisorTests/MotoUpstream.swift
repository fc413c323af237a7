import Foundation
import S3Client
import SidecarTestSupport
import Testing

/// A moto_server (PyPI) on a free loopback port with the bucket `automate-backups`: the real S3 upstream
/// of the gateway's S3 mode in these tests, started like every other child and ready when it says it runs.
/// The venv install.sh made for this user: /opt/automate for root, ~/.local/opt/automate otherwise.
final class MotoUpstream {
    static let bucket = "automate-backups"
    let process: LiveCommand
    let endpoint: String
    /// A client of moto itself (not through the gateway).
    let client: S3Client

    init() async throws {
        let prefix = ProcessInfo.processInfo.environment["AUTOMATE_PREFIX"]
            ?? (geteuid() == 0 ? "/opt/automate" : NSHomeDirectory() + "/.local/opt/automate")
        let motoPath = prefix + "/venv/bin/moto_server"
        try #require(FileManager.default.isExecutableFile(atPath: motoPath), "\(motoPath) missing: run scripts/install.sh --deps")
        let port = Fixture.freePort()
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = "test"
        environment["AWS_SECRET_ACCESS_KEY"] = "test"
        process = try LiveCommand(executable: motoPath, ["-H", "127.0.0.1", "-p", "\(port)"], environment: environment)
        endpoint = "http://127.0.0.1:\(port)"
        let banner = await process.waitFor("Running on \(endpoint)")
        if !banner.contains("Running on") { kill(process.pid, SIGKILL) }
        try #require(banner.contains("Running on"), "moto_server did not start: \(banner)")
        client = S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"))
        _ = try client.createBucketSync(Self.bucket)
    }

    func stop() { kill(process.pid, SIGKILL) }

    /// Writes the key pair file the gateway reads (0600, the gateway's user's) and points `stack`'s
    /// gateway at this moto, under `prefix`, in S3 mode; returns the key pair file.
    @discardableResult
    func useAsUpstream(of stack: TestStack, ports: TestStack.Ports, prefix: String) async throws -> String {
        let credentials = stack.root + "/upstream.credentials"
        try "test\ntest\n".write(toFile: credentials, atomically: true, encoding: .utf8)
        chmod(credentials, 0o600)
        _ = try await TestStack.shellCommand("[ $(id -u) -eq 0 ] && chown automate-backup-gateway '\(credentials)'; true")
        try stack.writeOverlay("backup-gateway", """
            [config]
            port = \(ports.gateway)
            mode = "s3"
            upstream_endpoint = "\(endpoint)"
            upstream_bucket = "\(Self.bucket)"
            upstream_prefix = "\(prefix)"
            upstream_credentials_file = "\(credentials)"

            """)
        return credentials
    }
}
