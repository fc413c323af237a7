import ESSidecar
import Foundation
import SidecarTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The stack's search engine keeps its data: the real es-sidecar-service executable saves the in-memory
/// engine on stop (SIGTERM, as the supervisor sends) and loads the save into a fresh engine on start.
final class PersistenceTests: XCTestCase {
    func sidecarBinary() throws -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("es-sidecar-service").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw XCTSkip("es-sidecar-service is not built next to the tests (swift build --build-tests builds it)")
    }

    func startSidecar(_ binary: String, engine: String, s3: String, socket: String, saveDir: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.environment = [
            "PATH": "/usr/bin:/bin", "AUTOMATE_SERVICE_SOCKET": socket, "AUTOMATE_CFG_SEARCH_URL": engine,
            "AUTOMATE_CFG_S3_ENDPOINT": s3, "AUTOMATE_CFG_SAVE_DIR": saveDir, "AUTOMATE_CFG_SAVE_INTERVAL_SECONDS": "3600",
        ]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        try Fixture.waitFor("es-sidecar-service socket") { FileManager.default.fileExists(atPath: socket) }
        return p
    }

    func testDocumentsSurviveStopAndStart() throws {
        let binary = try sidecarBinary()
        let dir = try Fixture.makeTempDir("es-persist")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try OsmemServer()
        let engine = SearchEngine(url: first.url)
        try engine.json("PUT", "/teams", body: ["mappings": ["properties": ["name": ["type": "keyword"], "size": ["type": "integer"]]]])
        for i in 0..<50 {
            try engine.json("PUT", "/teams/_doc/team-\(i)", body: ["name": "équipe \(i)", "size": i])
        }
        let socket = dir + "/es-sidecar-service.sock"
        let sidecar = try startSidecar(binary, engine: first.url, s3: "http://127.0.0.1:9", socket: socket, saveDir: dir + "/save")
        // Documents added while everything runs.
        for i in 50..<80 {
            try engine.json("PUT", "/teams/_doc/team-\(i)", body: ["name": "équipe \(i)", "size": i])
        }
        try engine.json("POST", "/teams/_refresh")
        XCTAssertEqual(try engine.count("teams"), 80)
        let mapping = try engine.definition("teams").mappings as NSDictionary

        // automate stop: the sidecar (a dependent) stops first and saves; then the engine stops.
        kill(sidecar.processIdentifier, SIGTERM)
        sidecar.waitUntilExit()
        XCTAssertEqual(sidecar.terminationStatus, 0)
        first.stop()
        unlink(socket)

        // automate start: a fresh, empty engine, then the sidecar, which loads the save.
        let second = try OsmemServer()
        defer { second.stop() }
        let fresh = SearchEngine(url: second.url)
        XCTAssertFalse(try fresh.indexExists("teams"))
        let again = try startSidecar(binary, engine: second.url, s3: "http://127.0.0.1:9", socket: socket, saveDir: dir + "/save")
        defer { kill(again.processIdentifier, SIGTERM); again.waitUntilExit() }
        XCTAssertEqual(try fresh.count("teams"), 80)
        XCTAssertEqual(try fresh.definition("teams").mappings as NSDictionary, mapping)
        let doc = try fresh.json("GET", "/teams/_doc/team-79") as? [String: Any]
        XCTAssertEqual((doc?["_source"] as? [String: Any])?["name"] as? String, "équipe 79")
    }
}
