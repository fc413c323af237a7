import Foundation
import Logging
import S3Client
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking work on its own thread (never on the cooperative pool the in-process server needs).
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        let t = Thread { cont.resume(with: Result { try body() }) }
        t.stackSize = 1 << 20
        t.start()
    }
}

/// Finds a tool in $AUTOMATE_TOOLS_DIR or PATH; fails the test (never skips) when it is missing.
func tool(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
    var dirs: [String] = []
    if let d = ProcessInfo.processInfo.environment["AUTOMATE_TOOLS_DIR"] { dirs.append(d) }
    dirs += (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
    for d in dirs where FileManager.default.isExecutableFile(atPath: d + "/" + name) { return d + "/" + name }
    XCTFail("\(name) not found in PATH: run scripts/install.sh --deps (installs awscli, boto3, moto)", file: file, line: line)
    throw XCTSkip("missing \(name)")
}

struct ProcResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a command to completion; output goes through temp files (no pipe deadlocks).
func runProcess(_ exe: String, _ args: [String], env: [String: String] = [:], cwd: String? = nil) async throws -> ProcResult {
    try await blocking {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let tmp = NSTemporaryDirectory() + "/gwproc-" + UUID().uuidString
        _ = FileManager.default.createFile(atPath: tmp + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: tmp + ".err", contents: nil)
        let out = FileHandle(forWritingAtPath: tmp + ".out")!, err = FileHandle(forWritingAtPath: tmp + ".err")!
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try? out.close(); try? err.close()
        defer { unlink(tmp + ".out"); unlink(tmp + ".err") }
        return ProcResult(status: p.terminationStatus,
                          stdout: (try? String(contentsOfFile: tmp + ".out", encoding: .utf8)) ?? "",
                          stderr: (try? String(contentsOfFile: tmp + ".err", encoding: .utf8)) ?? "")
    }
}

func makeTempDir(_ tag: String) -> String {
    let p = NSTemporaryDirectory() + "/s3gw-\(tag)-" + UUID().uuidString.prefix(8)
    try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

func randomBytes(_ n: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    var out = [UInt8](repeating: 0, count: n)
    var i = 0
    while i < n {
        var v = g.next()
        withUnsafeBytes(of: &v) { b in for j in 0..<min(8, n - i) { out[i + j] = b[j] } }
        i += 8
    }
    return out
}

/// Every file under a folder (relative paths), hidden ones included.
func walk(_ root: String) -> [String] {
    var out: [String] = []
    let e = FileManager.default.enumerator(atPath: root)
    while let p = e?.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + "/" + p, isDirectory: &isDir), !isDir.boolValue { out.append(p) }
    }
    return out.sorted()
}

let testCreds = Credentials(accessKeyId: "AKIDGATEWAYTEST", secretAccessKey: "gateway/secret+key/For=Tests")

/// A gateway in this process over a temp root folder with one bucket "repo".
final class FSFixture: @unchecked Sendable {
    let root: String
    let bucketDir: String
    let gateway: RunningGateway
    var port: Int { gateway.port }
    var endpoint: String { "http://127.0.0.1:\(port)" }

    init(root: String, bucketDir: String, gateway: RunningGateway) {
        self.root = root; self.bucketDir = bucketDir; self.gateway = gateway
    }

    static func start(extraBuckets: [String: String] = [:], region: String = "us-east-1",
                      metadataStorage: MetadataStorage = .automatic) async throws -> FSFixture {
        let root = makeTempDir("root")
        try FileManager.default.createDirectory(atPath: root + "/repo", withIntermediateDirectories: true)
        var logger = Logger(label: "gw-test")
        logger.logLevel = ProcessInfo.processInfo.environment["GATEWAY_TEST_LOG"] != nil ? .info : .critical
        let config = GatewayConfig(port: 0, mode: .filesystem(root: root, buckets: extraBuckets), credentials: testCreds, region: region,
                                   metadataStorage: metadataStorage)
        let gw = try await RunningGateway.start(config, logger: logger)
        return FSFixture(root: root, bucketDir: root + "/repo", gateway: gw)
    }

    func stop() async {
        await gateway.stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    var awsEnv: [String: String] {
        ["AWS_ACCESS_KEY_ID": testCreds.accessKeyId, "AWS_SECRET_ACCESS_KEY": testCreds.secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"]
    }

    func aws(_ args: [String], file: StaticString = #filePath, line: UInt = #line) async throws -> ProcResult {
        let r = try await runProcess(try tool("aws"), ["--endpoint-url", endpoint] + args, env: awsEnv)
        return r
    }

    @discardableResult
    func awsOK(_ args: [String], file: StaticString = #filePath, line: UInt = #line) async throws -> String {
        let r = try await aws(args)
        XCTAssertEqual(r.status, 0, "aws \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    /// No temp files or multipart staging left behind.
    func assertNoLeftovers(file: StaticString = #filePath, line: UInt = #line) {
        let junk = walk(root).filter { $0.contains(".automate-tmp") || $0.contains(".automate-uploads/") }
        XCTAssertEqual(junk, [], "leftover temp/staging files", file: file, line: line)
    }
}

// MARK: raw HTTP

struct RawResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var errorCode: String? { XML.first("Code", in: Substring(text)) }
}

/// A blocking TCP socket connected to 127.0.0.1:`port` (the caller closes it).
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let c = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard c == 0 else {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }
    return fd
}

/// A temp root folder with an empty bucket folder `repo` and a credentials file (0600) holding the test key
/// pair, for a gateway process (`--root root --credentials-file creds`).
func makeGatewayRoot(_ tag: String) throws -> (root: String, creds: String) {
    let root = makeTempDir(tag)
    try FileManager.default.createDirectory(atPath: root + "/repo", withIntermediateDirectories: true)
    let creds = root + "/creds"
    _ = FileManager.default.createFile(atPath: creds, contents: Data("\(testCreds.accessKeyId)\n\(testCreds.secretAccessKey)\n".utf8),
                                       attributes: [.posixPermissions: 0o600])
    return (root, creds)
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`); the path is sent exactly as given.
func rawRequest(port: Int, method: String, path: String, headers: [(String, String)], body: [UInt8] = [],
                contentLength: Int? = nil) async throws -> RawResponse {
    try await blocking {
        let fd = try connectLoopback(port: port)
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(contentLength ?? body.count)\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        if contentLength != nil && contentLength! > body.count { shutdown(fd, Int32(SHUT_WR)) }
        var resp = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            resp += buf[0..<n]
        }
        guard let sep = resp.firstRange(of: [13, 10, 13, 10]) else { return RawResponse(status: 0, headers: [:], body: resp) }
        let headText = String(decoding: resp[..<sep.lowerBound], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        var hs: [String: String] = [:]
        for l in lines { if let i = l.firstIndex(of: ":") { hs[l[..<i].lowercased()] = l[l.index(after: i)...].trimmingCharacters(in: .whitespaces) } }
        var body = Array(resp[sep.upperBound...])
        if hs["transfer-encoding"] == "chunked" { body = dechunk(body) }
        return RawResponse(status: statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0, headers: hs, body: body)
    }
}

func dechunk(_ b: [UInt8]) -> [UInt8] {
    var out = [UInt8](), i = 0
    while i < b.count {
        guard let e = b[i...].firstRange(of: [13, 10]) else { break }
        let size = Int(String(decoding: b[i..<e.lowerBound], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
        if size == 0 { break }
        out += b[e.upperBound..<(e.upperBound + size)]
        i = e.upperBound + size + 2
    }
    return out
}

/// Signs and sends a request with the given key pair (header auth).
func signedRequest(port: Int, method: String, path: String, query: String = "", body: [UInt8] = [],
                   payloadHash: String? = nil, extraHeaders: [(String, String)] = [], creds: Credentials = testCreds,
                   date: Date = Date(), wireBody: [UInt8]? = nil, contentLength: Int? = nil, tamper: Bool = false) async throws -> RawResponse {
    let signer = SigV4Signer(credentials: creds, region: "us-east-1")
    let hash = payloadHash ?? Digests.sha256Hex(body)
    var toSign: [String: String] = ["host": "127.0.0.1:\(port)"]
    for (k, v) in extraHeaders { toSign[k.lowercased()] = v }
    var signed = signer.sign(method: method, canonicalURI: path, query: QueryItems(Substring(query)), headers: toSign, payloadHash: hash, date: date)
    if tamper, let i = signed.firstIndex(where: { $0.0 == "authorization" }) {
        var a = signed[i].1
        let last = a.removeLast()
        a.append(last == "0" ? "1" : "0")
        signed[i].1 = a
    }
    let target = query.isEmpty ? path : path + "?" + query
    return try await rawRequest(port: port, method: method, path: target, headers: extraHeaders + signed, body: wireBody ?? body, contentLength: contentLength)
}

/// A boto3 client script preamble: `s3` talks to argv[1] with the gateway's test key (path style) for region argv[2];
/// argv[3:] are the script's. `code(fn, ...)` returns the (S3 error code, HTTP status) the call failed with.
let boto3Preamble = """
import boto3, botocore, io, hashlib, sys, json, datetime
from botocore.config import Config
s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='\(testCreds.accessKeyId)',
                  aws_secret_access_key='\(testCreds.secretAccessKey)', region_name=sys.argv[2],
                  config=Config(signature_version='s3v4', s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))
def code(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except botocore.exceptions.ClientError as e:
        return (e.response['Error']['Code'], e.response['ResponseMetadata']['HTTPStatusCode'])
    raise SystemExit('expected an error from %s' % fn.__name__)

"""

/// Runs a boto3 script (after `boto3Preamble`) against an endpoint; fails the test with its stderr when it fails.
@discardableResult
func runBoto3(_ script: String, endpoint: String, region: String = "us-east-1", args: [String] = [],
              file: StaticString = #filePath, line: UInt = #line) async throws -> String {
    let r = try await runProcess(try tool("python3"), ["-c", boto3Preamble + script, endpoint, region] + args)
    XCTAssertEqual(r.status, 0, "boto3 script failed:\n\(r.stderr)", file: file, line: line)
    return r.stdout
}

/// Header-auth headers (UNSIGNED-PAYLOAD) for a request the test sends itself.
func signedHeaders(port: Int, method: String, path: String, query: String = "", extraHeaders: [(String, String)] = []) -> [(String, String)] {
    let signer = SigV4Signer(credentials: testCreds, region: "us-east-1")
    var toSign: [String: String] = ["host": "127.0.0.1:\(port)"]
    for (k, v) in extraHeaders { toSign[k.lowercased()] = v }
    return extraHeaders + signer.sign(method: method, canonicalURI: path, query: QueryItems(Substring(query)), headers: toSign, payloadHash: "UNSIGNED-PAYLOAD")
}

/// An HTTP request sent in steps over its own connection: the head and some of the body first, the rest
/// later, so a test can act while the server is in the middle of receiving it.
final class StagedRequest: @unchecked Sendable {
    let fd: Int32

    /// Connects and sends the head (with `Content-Length: contentLength`) and `first` bytes of the body.
    init(port: Int, method: String, target: String, headers: [(String, String)], contentLength: Int, first: [UInt8]) async throws {
        fd = try await blocking { try connectLoopback(port: port) }
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(contentLength)\r\n\r\n"
        try await send(Array(head.utf8) + first)
    }

    deinit { close(fd) }

    /// Sends more body bytes (all of them, or throws when the peer went away).
    func send(_ bytes: [UInt8]) async throws {
        let fd = self.fd
        try await blocking {
            var off = 0
            while off < bytes.count {
                let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { throw POSIXError(.EPIPE) }
                off += n
            }
        }
    }

    /// Reads the response until the server closes; returns its status (0 when the connection died first).
    func status() async throws -> Int {
        let fd = self.fd
        return try await blocking {
            var resp = [UInt8]()
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                resp += buf[0..<n]
            }
            let line = String(decoding: resp.prefix(while: { $0 != 13 }), as: UTF8.self).split(separator: " ")
            return line.count > 1 ? Int(line[1]) ?? 0 : 0
        }
    }
}
