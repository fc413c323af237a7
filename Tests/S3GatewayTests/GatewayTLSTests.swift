import Foundation
import SidecarTestSupport
import XCTest
@testable import S3Gateway

/// The gateway's second listener, over TLS, for clients on other machines: the same buckets and key pair
/// as the plain one, a certificate from a CA made here, awscli checking it.
final class GatewayTLSTests: XCTestCase {
    func testTLSListenerServesTheSameBucketsCheckedByItsCA() async throws {
        let (root, creds) = try makeGatewayRoot("tls")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestCertificateAuthority(folder: root, name: "gateway-ca")
        let tls = try authority.issueServerCertificate(folder: root, prefix: "gateway")
        let other = try TestCertificateAuthority(folder: root, name: "other-ca")

        // Half a listener is refused at once, naming the three options.
        let half = try await runProcess(GatewayProcess.binary, ["--listen", "127.0.0.1:0", "--root", root, "--credentials-file", creds, "--tls-listen", "127.0.0.1:0"])
        XCTAssertNotEqual(half.status, 0)
        XCTAssertTrue(half.stderr.contains("--tls-listen, --tls-certificate and --tls-key go together"), half.stderr)
        // A key that is not one: refused naming the file.
        let badKey = try await runProcess(GatewayProcess.binary, ["--listen", "127.0.0.1:0", "--root", root, "--credentials-file", creds,
                                                                  "--tls-listen", "127.0.0.1:0", "--tls-certificate", tls.certificate, "--tls-key", authority.certificate])
        XCTAssertNotEqual(badKey.status, 0)
        XCTAssertTrue(badKey.stderr.contains("TLS key \(authority.certificate)"), badKey.stderr)

        let tlsPort = Fixture.freePort()
        let gateway = try await GatewayProcess.start(root: root, credentialsFile: creds,
                                                     extra: ["--tls-listen", "127.0.0.1:\(tlsPort)", "--tls-certificate", tls.certificate, "--tls-key", tls.key])
        defer { gateway.kill9() }
        let https = "https://localhost:\(tlsPort)"
        var answered = false
        for _ in 0..<100 where !answered {
            answered = try await runProcess("/usr/bin/curl", ["-fsS", "--cacert", authority.certificate, https + "/healthz"]).status == 0
            if !answered { try await Task.sleep(for: .milliseconds(50)) }
        }
        XCTAssertTrue(answered, "no answer over TLS on \(tlsPort)")

        let env = ["AWS_ACCESS_KEY_ID": testCreds.accessKeyId, "AWS_SECRET_ACCESS_KEY": testCreds.secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"]
        let aws = try tool("aws")
        // 20 MiB: a multipart upload, over TLS, checked against the gateway's CA.
        let bytes = randomBytes(20 << 20)
        try Data(bytes).write(to: URL(fileURLWithPath: root + "/upload.bin"))
        let up = try await runProcess(aws, ["--endpoint-url", https, "--ca-bundle", authority.certificate, "s3", "cp", root + "/upload.bin", "s3://repo/over-tls/upload.bin"], env: env)
        XCTAssertEqual(up.status, 0, up.stderr)
        // The same object through the plain listener, byte for byte.
        let down = try await runProcess(aws, ["--endpoint-url", "http://127.0.0.1:\(gateway.port)", "s3", "cp", "s3://repo/over-tls/upload.bin", root + "/download.bin"], env: env)
        XCTAssertEqual(down.status, 0, down.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: root + "/download.bin")), Data(bytes))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: root + "/repo/over-tls/upload.bin")), Data(bytes))

        // A client that trusts another CA refuses the gateway's certificate; a wrong key pair is refused too.
        let untrusted = try await runProcess(aws, ["--endpoint-url", https, "--ca-bundle", other.certificate, "s3", "ls", "s3://repo/"], env: env)
        XCTAssertNotEqual(untrusted.status, 0)
        XCTAssertTrue(untrusted.stderr.contains("SSL") || untrusted.stderr.contains("certificate"), untrusted.stderr)
        var wrongKeys = env
        wrongKeys["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        let unsigned = try await runProcess(aws, ["--endpoint-url", https, "--ca-bundle", authority.certificate, "s3", "ls", "s3://repo/"], env: wrongKeys)
        XCTAssertNotEqual(unsigned.status, 0)
        XCTAssertTrue(unsigned.stderr.contains("SignatureDoesNotMatch"), unsigned.stderr)
    }
}
