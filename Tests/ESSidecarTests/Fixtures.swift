import Foundation
import XCTest
import Glibc
import SidecarTestSupport

/// osmem-server (an in-memory OpenSearch-API engine) on a free loopback port.
final class OsmemServer {
    let process = Process()
    let port: Int
    var url: String { "http://127.0.0.1:\(port)" }

    init() throws {
        let path = try Fixture.requireTool("osmem-server")
        port = Fixture.freePort()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-addr", "127.0.0.1:\(port)", "-no-stdin-watch", "-parent-pid", String(getpid())]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let u = url
        try Fixture.waitFor("osmem-server on \(u)") { Fixture.httpOK(u + "/_cluster/health") }
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
    }
}
