// Real-process fixtures shared by the sidecar test targets: temp folders, free ports, tools from the
// stack's venv, and moto_server (S3) on a free loopback port.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

public enum Fixture {
    public static let toolDirs = ["/opt/automate/venv/bin", (NSHomeDirectory() as NSString).appendingPathComponent(".local/opt/automate/venv/bin")]

    /// Finds a tool in the stack's venv, then on PATH; nil when missing.
    public static func tool(_ name: String) -> String? {
        var dirs = toolDirs
        if let t = ProcessInfo.processInfo.environment["AUTOMATE_TOOLS_DIR"] { dirs.insert(t, at: 0) }
        dirs += (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for d in dirs {
            let p = (d as NSString).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    public static func requireTool(_ name: String) throws -> String {
        guard let p = tool(name) else {
            XCTFail("\(name) not found: run scripts/install.sh --deps")
            throw XCTSkip("\(name) missing")
        }
        return p
    }

    /// Ports handed out by this process, never handed out twice.
    private static let handedOut = Locked(Set<Int>())

    /// A TCP port on 127.0.0.1 that nothing listens on or is bound to now, for a server a test starts.
    ///
    /// It is drawn from 20000-32767, below the kernel's ephemeral range (32768-60999 by default): a port
    /// the kernel picked with `bind(port 0)` and that was then closed is also a port it may give any
    /// outgoing connection as its source port, and a client connection of another test that holds it
    /// makes the server's `bind` fail with EADDRINUSE (PostgreSQL exits 1, and every restart fails again).
    public static func freePort() -> Int {
        while true {
            let port = Int.random(in: 20000...32767)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if bindable(port) { return port }
        }
    }

    /// True when a listening socket could bind 127.0.0.1:`port` now (no SO_REUSEADDR: nothing may hold it).
    private static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } } == 0
    }

    public static func makeTempDir(_ prefix: String) throws -> String {
        let path = "/tmp/\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o755)
        return path
    }

    /// A key-pair file as the supervisor hands a gateway user its pair (`AUTOMATE_GATEWAY_CREDENTIALS_FILE`).
    public static func keyFile(id: String, secret: String) throws -> String {
        let path = try makeTempDir("keys") + "/gateway.credentials"
        try "access_key_id = \"\(id)\"\nsecret_access_key = \"\(secret)\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs a command to completion; returns (status, stdout, stderr).
    @discardableResult
    public static func run(_ path: String, _ args: [String], check: Bool = true) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let errData = Locked(Data())
        let g = DispatchGroup()
        g.enter()
        DispatchQueue.global().async {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            errData.withLock { $0 = data }
            g.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        g.wait()
        p.waitUntilExit()
        let o = String(decoding: outData, as: UTF8.self), e = String(decoding: errData.value, as: UTF8.self)
        if check && p.terminationStatus != 0 {
            throw NSError(domain: "fixture", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(path) \(args.joined(separator: " ")) failed: \(e)"])
        }
        return (p.terminationStatus, o, e)
    }

    public static func waitFor(_ what: String, timeout: TimeInterval = 30, _ probe: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if probe() { return }
            usleep(50_000)
        }
        throw NSError(domain: "fixture", code: 1, userInfo: [NSLocalizedDescriptionKey: "timed out waiting for \(what)"])
    }

    public static func httpOK(_ url: String) -> Bool {
        (try? run("/usr/bin/curl", ["-s", "-o", "/dev/null", "--max-time", "1", url], check: true)) != nil
    }
}

/// moto_server on a free loopback port.
public final class MotoServer {
    public let process = Process()
    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public init() throws {
        let path = try Fixture.requireTool("moto_server")
        port = Fixture.freePort()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-H", "127.0.0.1", "-p", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = "test"
        env["AWS_SECRET_ACCESS_KEY"] = "test"
        process.environment = env
        try process.run()
        let ep = endpoint
        try Fixture.waitFor("moto_server on \(ep)") { Fixture.httpOK(ep + "/moto-api/") }
    }

    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
    }
}
