import ESSidecar
import ExternalServers
import Foundation
import SidecarTestSupport
import XCTest

/// The search client against a cluster outside the stack: https checked against a CA file, basic
/// authentication from the file the supervisor writes, and one line naming what is wrong. The cluster is
/// a small HTTPS server (Python's ssl) that answers the OpenSearch root and demands the credentials.
final class ExternalSearchAccessTests: XCTestCase {
    var folder = ""
    var server: Process?
    var port = 0

    override func setUpWithError() throws {
        folder = try Fixture.makeTempDir("external-search")
        let authority = try TestCertificateAuthority(folder: folder, name: "cluster-ca")
        let tls = try authority.issueServerCertificate(folder: folder, prefix: "cluster")
        port = Fixture.freePort()
        let script = """
            import base64, http.server, json, ssl, sys
            expected = "Basic " + base64.b64encode(b"automate:right password").decode()
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    ok = self.headers.get("Authorization") == expected
                    body = json.dumps({"version": {"number": "2.11.0", "distribution": "opensearch"}} if ok
                                      else {"error": {"type": "security_exception", "reason": "missing authentication credentials"}}).encode()
                    self.send_response(200 if ok else 401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *args):
                    pass
            server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[2], sys.argv[3])
            server.socket = context.wrap_socket(server.socket, server_side=True)
            server.serve_forever()
            """
        try script.write(toFile: folder + "/cluster.py", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [folder + "/cluster.py", String(port), tls.certificate, tls.key]
        try p.run()
        server = p
        let url = "https://localhost:\(port)/"
        try Fixture.waitFor("the test cluster on \(port)") {
            (try? Fixture.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "--cacert", authority.certificate, url])) != nil
        }
    }

    override func tearDownWithError() throws {
        server?.terminate()
        server?.waitUntilExit()
        try? FileManager.default.removeItem(atPath: folder)
    }

    func testVerifiedAuthenticatedAndEachFailureNamed() throws {
        let url = "https://localhost:\(port)"
        let ca = folder + "/cluster-ca.pem"
        // The supervisor's copy of the credentials: the header's value, read through the environment.
        let file = folder + "/authorization"
        try ("Basic " + Data("automate:right password".utf8).base64EncodedString() + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let access = try SearchEngine.Access(environment: ["AUTOMATE_SEARCH_CA_FILE": ca, "AUTOMATE_SEARCH_AUTHORIZATION_FILE": file])
        let ok = ExternalCheck.search(url: url, access: access)
        XCTAssertEqual(ok, ExternalCheck(.ok, "opensearch 2.11.0 at \(url), TLS verified (ca_file \(ca))"))

        let wrong = SearchEngine.Access(caFile: ca, authorization: "Basic " + Data("automate:wrong".utf8).base64EncodedString())
        XCTAssertEqual(ExternalCheck.search(url: url, access: wrong),
                       ExternalCheck(.critical, "authentication: the search cluster at \(url) refused the credentials (HTTP 401)"))

        _ = try TestCertificateAuthority(folder: folder, name: "another-ca")
        let untrusted = ExternalCheck.search(url: url, access: SearchEngine.Access(caFile: folder + "/another-ca.pem", authorization: access.authorization))
        XCTAssertEqual(untrusted.outcome, .critical)
        XCTAssertTrue(untrusted.line.hasPrefix("TLS: the certificate of the search cluster at \(url) is not trusted (ca_file \(folder)/another-ca.pem)"), untrusted.line)

        XCTAssertThrowsError(try SearchEngine.Access(environment: ["AUTOMATE_SEARCH_AUTHORIZATION_FILE": folder + "/missing"])) { error in
            XCTAssertTrue("\(error)".contains("cannot read the search cluster's credentials \(self.folder)/missing"), "\(error)")
        }
        server?.terminate()
        server?.waitUntilExit()
        let down = ExternalCheck.search(url: url, access: access)
        XCTAssertTrue(down.outcome == .critical && down.line.hasPrefix("unreachable: cannot reach the search engine at \(url)"), down.line)
    }
}
