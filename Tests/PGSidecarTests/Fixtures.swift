import Foundation
import XCTest
import Glibc
import SidecarTestSupport

/// A throw-away PostgreSQL cluster: initdb into a temp dir and postgres on a Unix socket only (run as the
/// `automate` user when the tests run as root: initdb refuses root).
final class PostgresServer {
    static let bindir = "/usr/lib/postgresql/15/bin"
    let dir: String
    let port: Int
    let process = Process()
    let user = "automate"
    var socketDir: String { dir }

    static func asServiceUser(_ argv: [String]) -> (String, [String]) {
        if getuid() == 0 { return ("/usr/bin/setpriv", ["--reuid=automate", "--regid=automate", "--init-groups", "--reset-env"] + argv) }
        return (argv[0], Array(argv.dropFirst()))
    }

    init() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.bindir + "/initdb") else {
            XCTFail("PostgreSQL 15 is not installed: run scripts/install.sh --deps")
            throw XCTSkip("no postgres")
        }
        dir = try Fixture.makeTempDir("pgsidecar")
        port = Fixture.freePort()
        if getuid() == 0 {
            guard getpwnam("automate") != nil else {
                XCTFail("the user automate is missing: run scripts/install.sh --deps")
                throw XCTSkip("no automate user")
            }
            try Fixture.run("/bin/chown", ["automate:", dir])
        }
        let (initdb, initArgs) = Self.asServiceUser([Self.bindir + "/initdb", "-D", dir + "/data", "-U", user, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        try Fixture.run(initdb, initArgs)
        let (pg, pgArgs) = Self.asServiceUser([Self.bindir + "/postgres", "-D", dir + "/data", "-k", dir, "-c", "listen_addresses=", "-p", String(port),
                                               "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
        process.executableURL = URL(fileURLWithPath: pg)
        process.arguments = pgArgs
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let d = dir, p = port
        try Fixture.waitFor("postgres on \(d)") {
            (try? Fixture.run(Self.bindir + "/pg_isready", ["-h", d, "-p", String(p), "-q"])) != nil
        }
    }

    /// psql as the superuser; returns stdout.
    @discardableResult
    func psql(_ database: String, _ sql: String) throws -> String {
        try Fixture.run(Self.bindir + "/psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", user, "-d", database, "-c", sql]).1
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// md5 of `COPY (SELECT * FROM table ORDER BY order) TO STDOUT`.
    func copyMD5(_ database: String, _ table: String, orderBy: String) throws -> String {
        let cmd = "\(Self.bindir)/psql -X -q -h \(dir) -p \(port) -U \(user) -d \(database) -c 'COPY (SELECT * FROM \(table) ORDER BY \(orderBy)) TO STDOUT' | md5sum"
        return try Fixture.run("/bin/bash", ["-o", "pipefail", "-c", cmd]).1.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGINT) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// A test class whose tests share one PostgreSQL server, started (with the class's databases, made by
/// ``makeDatabases(_:)``) once before them and stopped after them.
class SharedPostgresTestCase: XCTestCase {
    nonisolated(unsafe) static var pg: PostgresServer?
    nonisolated(unsafe) static var setupError: String?

    /// Makes the databases the class's tests read.
    class func makeDatabases(_ pg: PostgresServer) throws {}

    override class func setUp() {
        super.setUp()
        do {
            let pg = try PostgresServer()
            Self.pg = pg
            try makeDatabases(pg)
        } catch {
            setupError = "\(error)"
        }
    }

    override class func tearDown() {
        pg?.stop()
        pg = nil
        setupError = nil
        super.tearDown()
    }

    /// The class's server; fails the test (naming why) when it did not start or its databases were not made.
    func server() throws -> PostgresServer {
        guard let pg = Self.pg, Self.setupError == nil else {
            XCTFail("PostgreSQL did not start (\(Self.setupError ?? "?"))")
            throw XCTSkip("no postgres")
        }
        return pg
    }
}
