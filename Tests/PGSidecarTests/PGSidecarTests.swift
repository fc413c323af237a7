import AutomateRPC
import DataTools
import Foundation
import Logging
import Operations
import PGSidecar
import S3Client
import SidecarProto
import SidecarTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// End to end through the RPC socket: a real PostgreSQL 15, real pg_dump/pg_restore, moto_server as S3.
final class PGSidecarTests: XCTestCase {
    nonisolated(unsafe) static var moto: MotoServer?
    nonisolated(unsafe) static var pg: PostgresServer?
    nonisolated(unsafe) static var server: RPCServer?
    nonisolated(unsafe) static var sidecar: PGSidecar?
    nonisolated(unsafe) static var setupError: String?
    static let bucket = "backups"

    override class func setUp() {
        super.setUp()
        do {
            moto = try MotoServer()
            pg = try PostgresServer()
        } catch {
            setupError = "\(error)"
        }
    }

    override class func tearDown() {
        if let server { let sem = DispatchSemaphore(value: 0); Task { await server.shutdown(); sem.signal() }; sem.wait() }
        pg?.stop()
        moto?.stop()
        super.tearDown()
    }

    func fixtures() async throws -> (PostgresServer, S3Client, RPCClient) {
        guard let pg = Self.pg, let moto = Self.moto else {
            XCTFail("fixtures did not start (\(Self.setupError ?? "?")): run scripts/install.sh --deps")
            throw XCTSkip("no fixtures")
        }
        // S3CLIENT_TEST_ENDPOINT (+ _KEY, _SECRET) runs against another S3 API (the backup-gateway).
        let env = ProcessInfo.processInfo.environment
        let s3 = env["S3CLIENT_TEST_ENDPOINT"].map {
            S3Client(endpoint: $0, credentials: S3Credentials(accessKeyID: env["S3CLIENT_TEST_KEY"] ?? "test", secretAccessKey: env["S3CLIENT_TEST_SECRET"] ?? "test"))
        } ?? S3Client(endpoint: moto.endpoint, credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"))
        let socket = pg.dir + "/pg-sidecar-service.sock"
        if Self.server == nil {
            var config = PGSidecarConfig(socketPath: socket, s3: s3, bucket: Self.bucket, server: PGServer(host: pg.socketDir, port: pg.port, user: pg.user))
            config.partSize = 5 << 20
            let sidecar = PGSidecar(config: config, logger: Logger(label: "test.pg-sidecar"))
            let server = RPCServer(configuration: .init(socketPath: socket), logger: Logger(label: "test.rpc"))
            sidecar.register(on: server)
            try await server.start()
            Self.server = server
            Self.sidecar = sidecar
            let client = try await RPCClient.connect(socketPath: socket)
            _ = try await client.unary("CreateRepo", Automate_Sidecar_Pg_PGCreateRepoRequest(), as: Automate_Sidecar_Pg_PGCreateRepoResponse.self)
            await client.close()
        }
        return (pg, s3, try await RPCClient.connect(socketPath: socket))
    }

    func backup(_ client: RPCClient, _ id: String, _ dbs: [String], service: String = "shop-service") async throws -> String {
        var req = Automate_Sidecar_Pg_PGCreateBackupRequest()
        req.backupID = id
        req.service = service
        req.databases = dbs
        return try await client.unary("CreateBackup", req, as: Automate_Sidecar_Pg_PGOperation.self).operationID
    }

    /// Follows the operation through WatchStatus (every change pushed, no polling) to its end.
    func wait(_ client: RPCClient, _ op: String, timeout: Duration = .seconds(300)) async throws -> Automate_Sidecar_Pg_PGStatus {
        var r = Automate_Sidecar_Pg_PGStatusRequest()
        r.operationID = op
        var last: Automate_Sidecar_Pg_PGStatus?
        for try await s in client.serverStream("WatchStatus", r, as: Automate_Sidecar_Pg_PGStatus.self, timeout: timeout) {
            if let last { XCTAssertGreaterThanOrEqual(s.bytesDone, last.bytesDone, "progress went back") }
            last = s
        }
        guard let last, [.completed, .failed, .cancelled].contains(last.phase) else {
            throw RPCError(.deadlineExceeded, "the watch of \(op) ended before the operation: \(String(describing: last))")
        }
        return last
    }

    func restore(_ client: RPCClient, _ id: String, service: String = "shop-service", databases: [String] = [], artifacts: [Automate_Sidecar_Pg_PGArtifact] = []) async throws -> Automate_Sidecar_Pg_PGStatus {
        var req = Automate_Sidecar_Pg_PGRestoreRequest()
        req.backupID = id
        req.service = service
        req.databases = databases
        req.artifacts = artifacts
        let op = try await client.unary("Restore", req, as: Automate_Sidecar_Pg_PGOperation.self).operationID
        return try await wait(client, op)
    }

    /// Several tables (one in another schema), non-ASCII text, a large object (unless told not to) and
    /// ~40 MB of rows.
    func makeShop(_ pg: PostgresServer, _ db: String, rows: Int = 400_000, largeObject: Bool = true) throws {
        try pg.psql("postgres", "DROP DATABASE IF EXISTS \(db) WITH (FORCE)")
        try pg.psql("postgres", "CREATE DATABASE \(db)")
        try pg.psql(db, """
            CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text);
            INSERT INTO customers VALUES (1, 'Zoë Ångström', 'Zürich'), (2, '山田太郎', '東京'), (3, 'Ελένη', 'Αθήνα'),
              (4, 'emoji 🚀✨', NULL), (5, E'tab\\tand\\nnewline', 'Łódź');
            CREATE TABLE orders (id bigint PRIMARY KEY, customer int REFERENCES customers(id), payload text, amount numeric(12,2), at timestamptz);
            INSERT INTO orders SELECT g, 1 + g % 5, md5(g::text) || md5((g * 7)::text) || md5(random()::text), (g % 10000) / 100.0,
              '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, \(rows)) g;
            CREATE SCHEMA audit;
            CREATE TABLE audit.events (id serial PRIMARY KEY, what jsonb);
            INSERT INTO audit.events (what) SELECT jsonb_build_object('n', g, 'note', 'café ' || g) FROM generate_series(1, 1000) g;
            CREATE TABLE docs (id int PRIMARY KEY, blob oid);
            INSERT INTO docs VALUES (1, \(largeObject ? "lo_from_bytea(0, convert_to(repeat('large object ✓ ', 100000), 'UTF8'))" : "NULL"));
            """)
    }

    func fingerprint(_ pg: PostgresServer, _ db: String) throws -> [String: String] {
        var out: [String: String] = [:]
        out["customers"] = try pg.copyMD5(db, "customers", orderBy: "id")
        out["orders"] = try pg.copyMD5(db, "orders", orderBy: "id")
        out["audit.events"] = try pg.copyMD5(db, "audit.events", orderBy: "id")
        out["docs"] = try pg.copyMD5(db, "docs", orderBy: "id")
        out["lo"] = try pg.psql(db, "SELECT md5(lo_get(blob)) FROM docs WHERE id = 1 AND blob IS NOT NULL")
        return out
    }

    /// Without large objects the data is COPY text only: it loads over several sessions at once, and the
    /// result is the same database.
    func testRestoreOverSeveralConnectionsEqual() async throws {
        let (pg, _, client) = try await fixtures()
        try makeShop(pg, "parallel", largeObject: false)
        try pg.psql("parallel", "SELECT setval('audit.events_id_seq', 5000)")
        let before = try fingerprint(pg, "parallel")
        let sequence = "SELECT last_value FROM audit.events_id_seq"
        let op = try await backup(client, "20260301103000", ["parallel"])
        let s = try await wait(client, op)
        XCTAssertEqual(s.phase, .completed, s.error)
        try pg.psql("parallel", "DELETE FROM orders WHERE id % 2 = 0")
        let r = try await restore(client, "20260301103000")
        XCTAssertEqual(r.phase, .completed, r.error)
        XCTAssertEqual(try fingerprint(pg, "parallel"), before)
        XCTAssertEqual(try pg.psql("parallel", sequence), "5000")
        XCTAssertEqual(try pg.psql("parallel", "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'"), "1")
        // ~40 MB of orders in 1 MiB batches: more than one session (one COPY transaction each) wrote them.
        XCTAssertGreaterThan(Int(try pg.psql("parallel", "SELECT count(DISTINCT xmin::text) FROM orders")) ?? 0, 1)
        XCTAssertEqual(try pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%__restore_%'"), "0")
        await client.close()
    }

    /// The database a restore replaces has a session open on it: the session is ended, the restored data
    /// takes the name, and the old database (put aside, no longer accepting sessions) is dropped after the
    /// restore, off its path; one left aside earlier (a sidecar that died before dropping it) goes too.
    func testRestoreReplacesALiveDatabaseAndDropsTheOldOneAfter() async throws {
        let (pg, _, client) = try await fixtures()
        try makeShop(pg, "swapped", rows: 5000, largeObject: false)
        let before = try fingerprint(pg, "swapped")
        let s = try await wait(client, try await backup(client, "20260301104500", ["swapped"]))
        XCTAssertEqual(s.phase, .completed, s.error)
        try pg.psql("swapped", "DELETE FROM orders WHERE id % 3 = 0")
        try pg.psql("postgres", "DROP DATABASE IF EXISTS \"stale__replaced_0123456789ab\"")
        try pg.psql("postgres", "CREATE DATABASE \"stale__replaced_0123456789ab\"")
        let server = PGServer(host: pg.socketDir, port: pg.port, user: pg.user)
        let held = try PGConnection(server, database: "swapped")
        XCTAssertEqual(try held.query("SELECT count(*) FROM customers").first?.first ?? nil, "5")

        let r = try await restore(client, "20260301104500")
        XCTAssertEqual(r.phase, .completed, r.error)
        XCTAssertEqual(try fingerprint(pg, "swapped"), before)
        XCTAssertThrowsError(try held.query("SELECT 1"), "the session on the replaced database was ended")
        XCTAssertEqual(try pg.psql("postgres", "SELECT datallowconn FROM pg_database WHERE datname = 'swapped'"), "t")
        // Dropped on a job of its own after the restore: wait for it (the sidecar's one signal is the
        // catalog itself), then nothing put aside is left.
        let deadline = ContinuousClock.now + .seconds(60)
        var left = ""
        repeat {
            left = try pg.psql("postgres", "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '%\\_\\_replaced\\_%'")
            if left.isEmpty { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        XCTAssertEqual(left, "", "databases put aside and not dropped")
        XCTAssertEqual(try pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%__restore_%'"), "0")
        await client.close()
    }

    func testDumpDropRestoreEqual() async throws {
        let (pg, s3, client) = try await fixtures()
        try makeShop(pg, "shop")
        let before = try fingerprint(pg, "shop")
        XCTAssertEqual(before.count, 5)

        let op = try await backup(client, "20260301100000", ["shop"])
        let s = try await wait(client, op)
        XCTAssertEqual(s.phase, .completed, s.error)
        let db = try XCTUnwrap(s.databases.first)
        XCTAssertEqual(db.key, "20260301100000/shop-service/pg_data/shop.fc.zst")
        XCTAssertEqual(db.sha256.count, 64)
        XCTAssertGreaterThan(db.size, 10 << 20, "want several 5 MiB parts")
        XCTAssertGreaterThan(s.bytesTotal, 0)
        XCTAssertTrue(db.tables.contains { $0.table == "orders" && $0.rows == 400_000 })
        // Counted from pg_dump's stream: every table's count(*) (and the large objects) exactly.
        let conn = try PGConnection(PGServer(host: pg.socketDir, port: pg.port, user: pg.user), database: "shop")
        let recorded = Dictionary(uniqueKeysWithValues: db.tables.map { ("\($0.schema).\($0.table)", $0.rows) })
        let actual = Dictionary(uniqueKeysWithValues: try conn.tableRowCounts().map { ("\($0.schema).\($0.table)", $0.rows) })
        XCTAssertEqual(recorded, actual)
        XCTAssertEqual(recorded["pg_catalog.pg_largeobject_metadata"], 1)
        XCTAssertEqual(recorded["audit.events"], 1000)
        let head = try await s3.headObject(bucket: Self.bucket, key: db.key)
        XCTAssertEqual(head?.size, db.size)
        let meta = try await s3.getObject(bucket: Self.bucket, key: "20260301100000/shop-service/pg_data/metadata.json")
        XCTAssertTrue(String(decoding: meta, as: UTF8.self).contains(db.sha256))

        let localeSQL = "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype FROM pg_database WHERE datname = 'shop'"
        let locale = try pg.psql("postgres", localeSQL)
        try pg.psql("postgres", "DROP DATABASE shop WITH (FORCE)")
        let r = try await restore(client, "20260301100000")
        XCTAssertEqual(r.phase, .completed, r.error)
        XCTAssertEqual(try fingerprint(pg, "shop"), before)
        XCTAssertEqual(try pg.psql("postgres", localeSQL), locale)
        // No temporary database left behind.
        XCTAssertEqual(try pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%__restore_%'"), "0")
        await client.close()
    }

    func testCorruptedObjectRefusedAndExistingDatabaseUntouched() async throws {
        let (pg, s3, client) = try await fixtures()
        try makeShop(pg, "corrupt", rows: 2000)
        let op = try await backup(client, "20260301110000", ["corrupt"])
        let s = try await wait(client, op)
        XCTAssertEqual(s.phase, .completed, s.error)
        let key = s.databases[0].key
        // After the backup the live database changes; a refused restore must leave that change in place.
        try pg.psql("corrupt", "INSERT INTO customers VALUES (99, 'after backup', NULL)")
        let live = try fingerprint(pg, "corrupt")

        var bytes = try await s3.getObject(bucket: Self.bucket, key: key)
        bytes[bytes.count / 2] ^= 0x5A
        try await s3.putObject(bucket: Self.bucket, key: key, bytes: bytes)
        let r = try await restore(client, "20260301110000")
        XCTAssertEqual(r.phase, .failed)
        XCTAssertFalse(r.error.isEmpty)
        XCTAssertEqual(try fingerprint(pg, "corrupt"), live)

        // Truncated (otherwise intact): refused too.
        bytes[bytes.count / 2] ^= 0x5A
        try await s3.putObject(bucket: Self.bucket, key: key, bytes: Array(bytes.prefix(bytes.count - 100)))
        let t = try await restore(client, "20260301110000")
        XCTAssertEqual(t.phase, .failed)
        XCTAssertEqual(try fingerprint(pg, "corrupt"), live)
        XCTAssertEqual(try pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%__restore_%'"), "0")
        await client.close()
    }

    func testKilledPgDumpFailsAndLeavesNoObject() async throws {
        let (pg, s3, client) = try await fixtures()
        try makeShop(pg, "killme", rows: 300_000)
        let op = try await backup(client, "20260301120000", ["killme"])
        var killed = false
        let deadline = ContinuousClock.now + .seconds(30)
        while !killed && ContinuousClock.now < deadline {
            var r = Automate_Sidecar_Pg_PGStatusRequest()
            r.operationID = op
            let s = try await client.unary("Status", r, as: Automate_Sidecar_Pg_PGStatus.self)
            if let d = s.databases.first, d.toolPid > 0, d.bytesDone > 0 {
                XCTAssertEqual(kill(d.toolPid, SIGKILL), 0)
                killed = true
            }
            if s.phase == .completed || s.phase == .failed { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTAssertTrue(killed, "pg_dump finished before it could be killed")
        let s = try await wait(client, op)
        XCTAssertEqual(s.phase, .failed)
        XCTAssertTrue(s.error.contains("pg_dump"), s.error)
        let head = try await s3.headObject(bucket: Self.bucket, key: "20260301120000/shop-service/pg_data/killme.fc.zst")
        XCTAssertNil(head)
        let listed = try await s3.listObjects(bucket: Self.bucket, prefix: "20260301120000/")
        XCTAssertTrue(listed.isEmpty, "\(listed)")
        let open = try await runBlocking { _ in try s3.listMultipartUploadsSync(bucket: Self.bucket, prefix: "20260301120000/") }
        XCTAssertTrue(open.isEmpty, "multipart upload not aborted: \(open)")
        await client.close()
    }

    func testUnknownDatabaseIsNotFoundNamingIt() async throws {
        let (_, _, client) = try await fixtures()
        do {
            _ = try await backup(client, "20260301130000", ["postgres", "no_such_db_42"])
            XCTFail("expected NOT_FOUND")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .notFound)
            XCTAssertTrue(e.message.contains("\"no_such_db_42\""), e.message)
        }
        do {
            _ = try await restore(client, "20260301130001")
            XCTFail("expected NOT_FOUND")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, .notFound, e.message)
        }
        await client.close()
    }

    /// Cancel during a dump that runs for seconds: within 1 s no pg_dump of the sidecar is left, the
    /// operation ends cancelled, its multipart upload is aborted and nothing appears under the prefix.
    func testCancelDuringLargeDumpKillsPgDumpAndUploadsNothing() async throws {
        let (pg, s3, setupClient) = try await fixtures()
        try pg.psql("postgres", "DROP DATABASE IF EXISTS big WITH (FORCE)")
        try pg.psql("postgres", "CREATE DATABASE big")
        try pg.psql("big", """
            CREATE TABLE t (id bigint PRIMARY KEY, a text, b text);
            INSERT INTO t SELECT g, md5(g::text) || md5(random()::text) || md5(random()::text), md5(random()::text) || md5((g * 3)::text)
            FROM generate_series(1, 1500000) g;
            """)
        // Loading the table can outlast the server's idle timeout (30 s), which closes a connection that
        // sends nothing: call on a fresh one.
        await setupClient.close()
        let client = try await RPCClient.connect(socketPath: setupClient.socketPath)
        let id = "20260301140000"
        let op = try await backup(client, id, ["big"])
        var r = Automate_Sidecar_Pg_PGStatusRequest()
        r.operationID = op
        // Follow the dump until pg_dump is running and has produced bytes, with a part or more uploaded.
        var toolPid: Int32 = 0
        for try await s in client.serverStream("WatchStatus", r, as: Automate_Sidecar_Pg_PGStatus.self, timeout: .seconds(120)) {
            XCTAssertNotEqual(s.phase, .completed, "the dump finished before it could be cancelled: make the table bigger")
            if let d = s.databases.first, d.toolPid > 0, d.bytesDone > 12 << 20 {
                toolPid = d.toolPid
                break
            }
        }
        XCTAssertGreaterThan(toolPid, 0)
        XCTAssertFalse(Self.pgDumps().isEmpty, "pg_dump runs before the cancel")
        let cancelled = ContinuousClock.now
        async let answer = client.unary("Cancel", r, as: Automate_Sidecar_Pg_PGStatus.self, timeout: .seconds(30))
        // Watched while the Cancel call is in flight: the bound is from the request, not from its answer.
        var left = Self.pgDumps()
        while !left.isEmpty && ContinuousClock.now - cancelled < .seconds(1) {
            try await Task.sleep(for: .milliseconds(10))
            left = Self.pgDumps()
        }
        XCTAssertEqual(left, [], "pg_dump still running 1 s after Cancel")
        let s = try await answer
        XCTAssertEqual(s.phase, .cancelled, s.error)
        XCTAssertEqual(s.databases.first?.phase, .cancelled)
        XCTAssertEqual(s.databases.first?.toolPid, 0)
        XCTAssertLessThan(ContinuousClock.now - cancelled, .seconds(10), "Cancel answered once the operation ended")
        // Status and a late watch agree; a second Cancel changes nothing.
        let status = try await client.unary("Status", r, as: Automate_Sidecar_Pg_PGStatus.self)
        XCTAssertEqual(status.phase, .cancelled)
        let watched = try await wait(client, op)
        XCTAssertEqual(watched.phase, .cancelled)
        let again = try await client.unary("Cancel", r, as: Automate_Sidecar_Pg_PGStatus.self)
        XCTAssertEqual(again.phase, .cancelled)
        // Nothing under the id, now and after a part that was in flight would have finished.
        for round in 0..<2 {
            let listed = try await s3.listObjects(bucket: Self.bucket, prefix: id + "/")
            XCTAssertTrue(listed.isEmpty, "round \(round): \(listed.map(\.key))")
            let open = try await runBlocking { _ in try s3.listMultipartUploadsSync(bucket: Self.bucket, prefix: id + "/") }
            XCTAssertTrue(open.isEmpty, "round \(round): multipart upload not aborted: \(open)")
            if round == 0 { try await Task.sleep(for: .seconds(2)) }
        }
        // The sidecar works on: the next backup of the same database completes.
        let next = try await wait(client, try await backup(client, "20260301140001", ["postgres"]))
        XCTAssertEqual(next.phase, .completed, next.error)
        await client.close()
    }

    /// Status, WatchStatus and Cancel of an operation the sidecar does not know (it restarted) answer
    /// NOT_FOUND naming the sidecar.
    func testUnknownOperationIsNotFoundNamingTheSidecar() async throws {
        let (_, _, client) = try await fixtures()
        var r = Automate_Sidecar_Pg_PGStatusRequest()
        r.operationID = "backup-20260101000000-0123456789ab"
        for method in ["Status", "Cancel", "WatchStatus"] {
            do {
                if method == "WatchStatus" {
                    for try await _ in client.serverStream(method, r, as: Automate_Sidecar_Pg_PGStatus.self) {
                        XCTFail("WatchStatus yielded a status for an unknown operation")
                    }
                } else {
                    _ = try await client.unary(method, r, as: Automate_Sidecar_Pg_PGStatus.self)
                }
                XCTFail("\(method): expected NOT_FOUND")
            } catch let e as RPCError {
                XCTAssertEqual(e.code, .notFound, "\(method): \(e)")
                XCTAssertTrue(e.message.contains("pg-sidecar-service"), e.message)
                XCTAssertTrue(e.message.contains(r.operationID), e.message)
                XCTAssertTrue(e.message.contains("restarted"), e.message)
            }
        }
        await client.close()
    }

    /// pg_dump processes descended from this process (the sidecar runs in it), from /proc.
    static func pgDumps() -> [Int32] { KitCancelTests.descendants(named: "pg_dump") }

    func testPlainSQLArtifactFromPhaseOne() async throws {
        let (pg, s3, client) = try await fixtures()
        try makeShop(pg, "legacy", rows: 1000)
        let before = try fingerprint(pg, "legacy")
        let (_, sql, _) = try Fixture.run(PostgresServer.bindir + "/pg_dump", ["-Fp", "-h", pg.dir, "-p", String(pg.port), "-U", pg.user, "-d", "legacy"])
        let bytes = Array(sql.utf8)
        let key = "20260201000000/legacy-service/pg_data/legacy.sql"
        try await s3.putObject(bucket: Self.bucket, key: key, bytes: bytes)
        let file = pg.dir + "/legacy.sql"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let sha = String(try Fixture.run("/usr/bin/sha256sum", [file]).1.prefix(64))
        try pg.psql("postgres", "DROP DATABASE legacy WITH (FORCE)")
        var a = Automate_Sidecar_Pg_PGArtifact()
        a.database = "legacy"; a.key = key; a.format = "sql"; a.sha256 = sha; a.size = Int64(bytes.count)
        let r = try await restore(client, "20260201000000", service: "legacy-service", artifacts: [a])
        XCTAssertEqual(r.phase, .completed, r.error)
        XCTAssertEqual(try fingerprint(pg, "legacy"), before)
        await client.close()
    }
}

/// The real executable: configured from the supervisor's environment, serves its socket, stops on SIGTERM.
final class PGSidecarExecutableTests: XCTestCase {
    func testExecutableServesAndStopsOnSIGTERM() async throws {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let binary = [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("pg-sidecar-service").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else { throw XCTSkip("pg-sidecar-service is not built next to the tests (swift build --build-tests builds it)") }
        let pg = try PostgresServer()
        defer { pg.stop() }
        let socket = pg.dir + "/pg-sidecar-service.sock"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.environment = [
            "PATH": "/usr/bin:/bin", "AUTOMATE_SERVICE_SOCKET": socket,
            // No S3 needed to list databases; the stale-upload sweep only logs a warning.
            "AUTOMATE_GATEWAY_ENDPOINT": "http://127.0.0.1:9", "AUTOMATE_GATEWAY_BUCKET": "backups",
            "AUTOMATE_GATEWAY_CREDENTIALS_FILE": try Fixture.keyFile(id: "test", secret: "test"),
            "AUTOMATE_CFG_PG_HOST": pg.dir, "AUTOMATE_CFG_PG_PORT": String(pg.port), "AUTOMATE_CFG_PG_USER": pg.user,
        ]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        try Fixture.waitFor("pg-sidecar-service socket") { FileManager.default.fileExists(atPath: socket) }
        let client = try await RPCClient.connect(socketPath: socket)
        let list = try await client.unary("ListDatabases", Automate_Sidecar_Pg_PGListDatabasesRequest(), as: Automate_Sidecar_Pg_PGListDatabasesResponse.self)
        XCTAssertTrue(list.databases.contains("postgres"))
        XCTAssertTrue(list.serverVersion.hasPrefix("15"), list.serverVersion)
        await client.close()
        kill(p.processIdentifier, SIGTERM)
        try Fixture.waitFor("pg-sidecar-service to stop on SIGTERM", timeout: 10) { !p.isRunning }
        XCTAssertEqual(p.terminationStatus, 0)
    }
}
