import BackupContract
import Foundation
import Logging
import Operations
import S3Client
import ServiceKit
import SidecarTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The service kit against the real pg-sidecar-service executable, PostgreSQL and moto: cancelling a
/// backup reaches pg_dump (in the sidecar) and tar (in the kit) within a second and leaves nothing under
/// the id; a sidecar that dies mid-backup fails the backup at once, naming it.
final class KitCancelTests: XCTestCase {
    nonisolated(unsafe) static var moto: MotoServer?
    nonisolated(unsafe) static var pg: PostgresServer?
    nonisolated(unsafe) static var setupError: String?
    static let bucket = "backups"

    override class func setUp() {
        super.setUp()
        do {
            moto = try MotoServer()
            pg = try PostgresServer()
            try pg?.psql("postgres", "CREATE DATABASE big")
            // ~200 MB through pg_dump: several seconds of dumping and uploading.
            try pg?.psql("big", """
                CREATE TABLE t (id bigint PRIMARY KEY, a text, b text);
                INSERT INTO t SELECT g, md5(g::text) || md5(random()::text) || md5(random()::text), md5(random()::text) || md5((g * 3)::text)
                FROM generate_series(1, 1500000) g;
                """)
        } catch {
            setupError = "\(error)"
        }
    }

    override class func tearDown() {
        pg?.stop()
        moto?.stop()
        super.tearDown()
    }

    struct Stack {
        let pg: PostgresServer
        let s3: S3Client
        let sidecar: Process
        let kit: BackupKit
        let files: String
    }

    func sidecarBinary() throws -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("pg-sidecar-service").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw XCTSkip("pg-sidecar-service is not built next to the tests (swift build --build-tests builds it)")
    }

    /// The sidecar as its own process (as the supervisor starts it), and a kit owning the big database
    /// and a folder of 96 MiB of random bytes (tar + zstd + upload take seconds).
    func stack(_ name: String) async throws -> Stack {
        guard let pg = Self.pg, let moto = Self.moto else {
            XCTFail("fixtures did not start (\(Self.setupError ?? "?")): run scripts/install.sh --deps")
            throw XCTSkip("no fixtures")
        }
        let s3 = S3Client(endpoint: moto.endpoint, credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"))
        _ = try await s3.createBucket(Self.bucket)
        let run = try Fixture.makeTempDir("kit-\(name)")
        let socket = run + "/pg-sidecar-service.sock"
        let sidecar = Process()
        sidecar.executableURL = URL(fileURLWithPath: try sidecarBinary())
        sidecar.environment = [
            "PATH": "/usr/bin:/bin", "AUTOMATE_SERVICE_SOCKET": socket,
            "AUTOMATE_GATEWAY_ENDPOINT": moto.endpoint, "AUTOMATE_GATEWAY_BUCKET": Self.bucket,
            "AUTOMATE_GATEWAY_CREDENTIALS_FILE": try Fixture.keyFile(id: "test", secret: "test"),
            "AUTOMATE_CFG_PG_HOST": pg.dir, "AUTOMATE_CFG_PG_PORT": String(pg.port), "AUTOMATE_CFG_PG_USER": pg.user,
            "AUTOMATE_CFG_PART_SIZE_MIB": "5",
        ]
        sidecar.standardInput = FileHandle.nullDevice
        sidecar.standardOutput = FileHandle.nullDevice
        sidecar.standardError = FileHandle.nullDevice
        try sidecar.run()
        addTeardownBlock {
            if sidecar.isRunning { kill(sidecar.processIdentifier, SIGKILL) }
            sidecar.waitUntilExit()
            try? FileManager.default.removeItem(atPath: run)
        }
        try Fixture.waitFor("pg-sidecar-service socket") { FileManager.default.fileExists(atPath: socket) }
        let files = run + "/files"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        for i in 0..<3 {
            try Fixture.run("/bin/dd", ["if=/dev/urandom", "of=\(files)/blob\(i)", "bs=1M", "count=32", "status=none"])
        }
        var config = KitConfig(s3: s3, bucket: Self.bucket, pgSidecarSocket: socket, esSidecarSocket: run + "/es-sidecar-service.sock")
        config.partSize = 5 << 20
        let kit = BackupKit(service: "kit-service", owned: OwnedData(databases: ["big"], paths: [files]), config: config,
                            logger: Logger(label: "test.kit"))
        return Stack(pg: pg, s3: s3, sidecar: sidecar, kit: kit, files: files)
    }

    /// Follows the kit's backup until pg_dump and tar both run and bytes moved.
    func waitUntilToolsRun(_ kit: BackupKit, _ id: String) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        for await s in try await kit.watchBackup(id) {
            XCTAssertEqual(s.state, .running, "the backup ended before both tools ran: \(s.error)")
            if s.progress.bytesDone > 8 << 20, !Self.descendants(named: "pg_dump").isEmpty, !Self.descendants(named: "tar").isEmpty { return }
            if ContinuousClock.now > deadline { break }
        }
        XCTFail("pg_dump and tar did not both run")
    }

    func testCancelledBackupKillsPgDumpAndTarAndUploadsNothing() async throws {
        let stack = try await stack("cancel")
        let id = "20260302100000"
        _ = try await stack.kit.createBackup(id)
        try await waitUntilToolsRun(stack.kit, id)
        let cancelled = ContinuousClock.now
        let accepted = await stack.kit.cancelBackup(id)
        XCTAssertTrue(accepted)
        var left = Self.descendants(named: "pg_dump") + Self.descendants(named: "tar")
        while !left.isEmpty && ContinuousClock.now - cancelled < .seconds(1) {
            try await Task.sleep(for: .milliseconds(20))
            left = Self.descendants(named: "pg_dump") + Self.descendants(named: "tar")
        }
        XCTAssertEqual(left, [], "pg_dump or tar still running 1 s after the cancel")
        var last: ServiceBackupStatus?
        for await s in try await stack.kit.watchBackup(id) { last = s }
        XCTAssertEqual(last?.state, .cancelled, last?.error ?? "")
        XCTAssertLessThan(ContinuousClock.now - cancelled, .seconds(5))
        // Nothing under the id, now and after a part that was in flight would have finished.
        for round in 0..<2 {
            let listed = try await stack.s3.listObjects(bucket: Self.bucket, prefix: id + "/")
            XCTAssertTrue(listed.isEmpty, "round \(round): \(listed.map(\.key))")
            let s3 = stack.s3
            let open = try await runBlocking { _ in try s3.listMultipartUploadsSync(bucket: Self.bucket, prefix: id + "/") }
            XCTAssertTrue(open.isEmpty, "round \(round): multipart uploads left open: \(open.map(\.key))")
            if round == 0 { try await Task.sleep(for: .seconds(2)) }
        }
        XCTAssertTrue(stack.sidecar.isRunning, "the sidecar survives a cancel")
    }

    func testSidecarKilledMidBackupFailsItAtOnceNamingTheSidecar() async throws {
        let stack = try await stack("killed")
        let id = "20260302110000"
        _ = try await stack.kit.createBackup(id)
        try await waitUntilToolsRun(stack.kit, id)
        let dumps = Self.descendants(named: "pg_dump")
        XCTAssertFalse(dumps.isEmpty)
        let killed = ContinuousClock.now
        kill(stack.sidecar.processIdentifier, SIGKILL)
        var last: ServiceBackupStatus?
        for await s in try await stack.kit.watchBackup(id) { last = s }
        XCTAssertEqual(last?.state, .failed)
        XCTAssertTrue(last?.error.contains("pg-sidecar-service") == true, last?.error ?? "")
        XCTAssertLessThan(ContinuousClock.now - killed, .seconds(5), "the kit fails at once, without retrying")
        // pg_dump died with its sidecar (it was started with a parent-death signal); the kit's tar was
        // stopped with the failed backup.
        // (An orphaned pg_dump is re-parented away from us: it is looked for by its pid.)
        var left = dumps.filter(Self.isAlive) + Self.descendants(named: "tar")
        while !left.isEmpty && ContinuousClock.now - killed < .seconds(2) {
            try await Task.sleep(for: .milliseconds(20))
            left = dumps.filter(Self.isAlive) + Self.descendants(named: "tar")
        }
        XCTAssertEqual(left, [])
    }

    /// True while `pid` runs (not exited, not a zombie).
    static func isAlive(_ pid: Int32) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// Live processes named `comm` that descend from this test process.
    static func descendants(named comm: String) -> [Int32] {
        func stat(_ pid: Int32) -> (comm: String, ppid: Int32, state: Character)? {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 2, let ppid = Int32(fields[1]) else { return nil }
            return (String(text[text.index(after: open)..<close]), ppid, fields[0].first ?? "?")
        }
        let me = getpid()
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        return pids.filter { pid in
            guard let s = stat(pid), s.comm == comm, s.state != "Z" else { return false }
            var parent = s.ppid
            while parent > 1 {
                if parent == me { return true }
                guard let p = stat(parent) else { return false }
                parent = p.ppid
            }
            return false
        }.sorted()
    }
}
