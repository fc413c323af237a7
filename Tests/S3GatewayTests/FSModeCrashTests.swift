import Foundation
import S3Client
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// The backup-gateway executable as a child process (so it can be killed with SIGKILL).
final class GatewayProcess: @unchecked Sendable {
    let process: Process
    let port: Int
    private let logLock = NSLock()
    private var logText = ""

    init(process: Process, port: Int) { self.process = process; self.port = port }

    /// What the gateway wrote to stderr so far (its log).
    var log: String {
        logLock.lock()
        defer { logLock.unlock() }
        return logText
    }

    fileprivate func append(_ text: String) {
        logLock.lock()
        logText += text
        logLock.unlock()
    }

    /// The folder holding this build's executables (next to the test bundle).
    static let binary: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = (exe as NSString).deletingLastPathComponent
        while !FileManager.default.isExecutableFile(atPath: dir + "/backup-gateway") && dir != "/" { dir = (dir as NSString).deletingLastPathComponent }
        return dir + "/backup-gateway"
    }()

    /// Starts it on a free port and waits for its "listening on" log line (or its exit); its stderr is read
    /// on until it exits, into ``log``.
    static func start(root: String, credentialsFile: String, extra: [String] = [], logLevel: String = "notice") async throws -> GatewayProcess {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            XCTFail("backup-gateway not built next to the tests (swift build --build-tests)")
            throw XCTSkip("no backup-gateway")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["--listen", "127.0.0.1:0", "--root", root, "--credentials-file", credentialsFile, "--log-level", logLevel] + extra
        let pipe = Pipe()
        p.standardError = pipe
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let handle = pipe.fileHandleForReading
        // Reads stderr lines until the port is announced; EOF (the process died) ends it with nil.
        let (port, text): (Int?, String) = try await blocking {
            var text = ""
            while true {
                let d = handle.availableData
                if d.isEmpty { return (nil, text) }
                text += String(decoding: d, as: UTF8.self)
                if let r = text.range(of: "listening on 127.0.0.1:") {
                    let digits = text[r.upperBound...].prefix(while: \.isNumber)
                    if text[r.upperBound...].dropFirst(digits.count).first != nil, let port = Int(digits) { return (port, text) }
                }
            }
        }
        guard let port else {
            XCTFail("backup-gateway exited before listening:\n\(text)")
            throw XCTSkip("backup-gateway did not start")
        }
        let gateway = GatewayProcess(process: p, port: port)
        gateway.append(text)
        // Keeps reading, so that a talkative gateway never blocks on a full pipe.
        Thread.detachNewThread {
            while true {
                let d = handle.availableData
                if d.isEmpty { return }
                gateway.append(String(decoding: d, as: UTF8.self))
            }
        }
        return gateway
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

final class FSModeCrashTests: XCTestCase {
    enum Stage { case halfBody, wholeBody, answered }

    /// kill -9 during PUTs with metadata: afterwards the object is the old one with its old metadata or the
    /// new one with the new metadata, never a mix, in both metadata storages.
    func testKillDuringPutWithMetadata() async throws {
        for storage in ["auto", "side-folder"] {
            let (root, creds) = try makeGatewayRoot("crash")
            defer { try? FileManager.default.removeItem(atPath: root) }
            let args = ["--metadata-storage", storage]
            var started: [GatewayProcess] = []
            // Every process started here is killed at the end, also when an assertion throws midway.
            defer { for g in started { g.kill9() } }
            var gw = try await GatewayProcess.start(root: root, credentialsFile: creds, extra: args)
            started.append(gw)
            let size = 4 << 20
            func headers(_ gen: Int) -> [(String, String)] { [("content-type", "text/gen-\(gen)"), ("x-amz-meta-gen", String(gen))] }
            let first = try await signedRequest(port: gw.port, method: "PUT", path: "/repo/obj", body: [UInt8](repeating: 1, count: size),
                                                extraHeaders: headers(1))
            XCTAssertEqual(first.status, 200, first.text)
            var current = 1
            let stages: [Stage] = [.halfBody, .wholeBody, .halfBody, .wholeBody, .answered, .wholeBody, .wholeBody]
            for (i, stage) in stages.enumerated() {
                let gen = i + 2
                let body = [UInt8](repeating: UInt8(gen), count: size)
                let put = try await StagedRequest(port: gw.port, method: "PUT", target: "/repo/obj",
                                                  headers: signedHeaders(port: gw.port, method: "PUT", path: "/repo/obj", extraHeaders: headers(gen)),
                                                  contentLength: size, first: Array(body[..<(size / 2)]))
                switch stage {
                case .halfBody: break
                case .wholeBody: try await put.send(Array(body[(size / 2)...]))
                case .answered:
                    try await put.send(Array(body[(size / 2)...]))
                    let status = try await put.status()
                    XCTAssertEqual(status, 200)
                }
                gw.kill9()
                gw = try await GatewayProcess.start(root: root, credentialsFile: creds, extra: args)
                started.append(gw)
                let head = try await signedRequest(port: gw.port, method: "HEAD", path: "/repo/obj")
                let get = try await signedRequest(port: gw.port, method: "GET", path: "/repo/obj")
                XCTAssertEqual(get.status, 200, "\(storage) stage \(i)")
                let g = Int(head.headers["x-amz-meta-gen"] ?? "") ?? -1
                XCTAssertTrue(g == current || g == gen, "\(storage) stage \(i): generation \(g), expected \(current) or \(gen)")
                XCTAssertEqual(head.headers["content-type"], "text/gen-\(g)", "\(storage) stage \(i): metadata of one generation")
                XCTAssertEqual(get.headers["x-amz-meta-gen"], String(g))
                XCTAssertTrue(get.body.count == size && get.body.allSatisfy { $0 == UInt8(g) }, "\(storage) stage \(i): bytes of generation \(g)")
                if stage == .halfBody { XCTAssertEqual(g, current, "an incomplete body never replaces the object") }
                if stage == .answered { XCTAssertEqual(g, gen, "an answered PUT is durable") }
                current = g
            }
            let list = try await signedRequest(port: gw.port, method: "GET", path: "/repo", query: "list-type=2")
            XCTAssertEqual(XML.elements("Key", in: Substring(list.text)), ["obj"], list.text)
        }
    }
}
