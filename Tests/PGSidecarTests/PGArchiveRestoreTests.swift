import DataTools
import Foundation
@testable import PGSidecar
import SidecarTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `PGArchiveRestore` against archives of the real pg_dump 15: what it restores over several connections
/// must be the same database (schema, every row, sequence values) as the source, however the bytes are
/// cut; a cut, corrupt or cancelled restore must fail naming why and leave no session behind.
final class PGArchiveRestoreTests: SharedPostgresTestCase {
    static let source = "rich"

    /// What pg_restore must get right besides rows: sequences (owned, standalone, identity) and their
    /// values, views, a materialized view, foreign keys, checks, a trigger and its function, comments,
    /// grants, a generated column, a partitioned table, quoted names, text that COPY escapes, an empty
    /// table, a table without columns, an unlogged table and ~8 MB of rows (several COPY batches).
    override class func makeDatabases(_ pg: PostgresServer) throws {
        try pg.psql("postgres", "CREATE DATABASE \(source)")
        try pg.psql("postgres", "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN CREATE ROLE reader; END IF; END $$")
        try pg.psql(source, """
            CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL CHECK (name <> ''), city text);
            INSERT INTO customers (name, city) VALUES ('Zoë Ångström', 'Zürich'), ('山田太郎', '東京'), (E'tab\\there', NULL),
              (E'line1\\nline2', E'back\\\\slash'), (E'\\\\.', '.'), ('x', '');
            CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int NOT NULL REFERENCES customers(id),
              amount numeric(12,2), twice numeric GENERATED ALWAYS AS (amount * 2) STORED, note text);
            INSERT INTO orders (customer, amount, note) SELECT 1 + g % 4, (g % 10000) / 100.0,
              md5(g::text) || E'\\t' || md5((g * 3)::text) || CASE WHEN g % 1000 = 0 THEN E'\\n\\\\.\\n' ELSE '' END
              FROM generate_series(1, 90000) g;
            CREATE INDEX orders_customer ON orders (customer);
            CREATE SEQUENCE invoice_numbers START 1000;
            SELECT setval('invoice_numbers', 4242);
            CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 90;
            CREATE MATERIALIZED VIEW totals AS SELECT customer, sum(amount) AS total FROM orders GROUP BY customer;
            CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.city := coalesce(NEW.city, '?'); RETURN NEW; END $$;
            CREATE TRIGGER customers_touch BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION touch();
            COMMENT ON TABLE orders IS 'every order';
            GRANT SELECT ON orders TO reader;
            CREATE SCHEMA "Other Schema";
            CREATE TABLE "Other Schema"."Quoted ""Name"" Täble" (x int UNIQUE);
            INSERT INTO "Other Schema"."Quoted ""Name"" Täble" SELECT generate_series(1, 17);
            CREATE TABLE measurements (id int, at date) PARTITION BY RANGE (at);
            CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            INSERT INTO measurements SELECT g, '2025-06-01'::date + g FROM generate_series(1, 300) g;
            CREATE TABLE empty_t (id int);
            CREATE TABLE nocols ();
            INSERT INTO nocols SELECT FROM generate_series(1, 3);
            CREATE UNLOGGED TABLE scratch (v int);
            INSERT INTO scratch SELECT generate_series(1, 5);
            """)
    }

    /// `pg_dump -Fc <compression>` of `db`, read back whole.
    func dump(_ db: String, _ options: [String] = ["-Z0"]) throws -> [UInt8] {
        let pg = try server()
        let file = pg.dir + "/\(db)\(options.joined()).fc"
        try Fixture.run(PostgresServer.bindir + "/pg_dump", ["-Fc"] + options + ["-h", pg.dir, "-p", String(pg.port), "-U", pg.user, "-d", db, "-f", file])
        defer { unlink(file) }
        return Array(try Data(contentsOf: URL(fileURLWithPath: file)))
    }

    func restorer(into db: String, connections: Int = 3) throws -> PGArchiveRestore {
        let pg = try server()
        try pg.psql("postgres", "DROP DATABASE IF EXISTS \(db) WITH (FORCE)")
        try pg.psql("postgres", "CREATE DATABASE \(db) TEMPLATE template0")
        let tools = PGArchiveRestore.Tools(
            pgRestore: PostgresServer.bindir + "/pg_restore",
            target: ["-h", pg.dir, "-p", String(pg.port), "-U", pg.user, "--no-password", "-d", db],
            environment: ProcessInfo.processInfo.environment)
        return PGArchiveRestore(tools: tools, server: PGServer(host: pg.socketDir, port: pg.port, user: pg.user), database: db, connections: connections) { _ in }
    }

    /// Feeds `bytes` in cuts of `sizes` (cycled), then finishes; closes whatever happened.
    func restore(_ r: PGArchiveRestore, _ bytes: [UInt8], sizes: [Int]) throws {
        defer { r.close() }
        try bytes.withUnsafeBytes { all in
            var off = 0, i = 0
            while off < all.count {
                let n = min(sizes[i % sizes.count], all.count - off)
                try r.feed(UnsafeRawBufferPointer(rebasing: all[off..<(off + n)]))
                off += n
                i += 1
            }
        }
        try r.finish()
    }

    /// Everything a restore must reproduce: the schema as pg_dump prints it, every table's rows (sorted,
    /// hashed, counted), the sequences' values and the large objects.
    func fingerprint(_ db: String) throws -> [String: String] {
        let pg = try server()
        var out: [String: String] = [:]
        // pg_dump's \restrict lines carry a random key: not part of the schema.
        out["schema"] = try Fixture.run(PostgresServer.bindir + "/pg_dump", ["-s", "-h", pg.dir, "-p", String(pg.port), "-U", pg.user, "-d", db]).1
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("\\restrict") && !$0.hasPrefix("\\unrestrict") }
            .joined(separator: "\n")
        let tables = try pg.psql(db, """
            SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
            """).split(separator: "\n")
        for t in tables {
            out["rows " + t] = try pg.psql(db, "SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM \(t) x")
        }
        out["sequences"] = try pg.psql(db, "SELECT string_agg(schemaname || '.' || sequencename || '=' || coalesce(last_value::text, 'null'), ',' ORDER BY schemaname, sequencename) FROM pg_sequences")
        out["large objects"] = try pg.psql(db, "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)), '') FROM pg_largeobject_metadata")
        return out
    }

    /// Sessions connected to `db` once the server has seen the restore's connections close (a restore that
    /// ended must leave none; a backend leaves pg_stat_activity a moment after its client closed).
    func sessions(_ db: String) throws -> Int {
        let pg = try server()
        func count() throws -> Int { Int(try pg.psql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = '\(db)'")) ?? -1 }
        try? Fixture.waitFor("the sessions on \(db) to end", timeout: 5) { (try? count()) == 0 }
        return try count()
    }

    func testParallelRestoreEqualsTheSourceForEveryCut() throws {
        let archive = try dump(Self.source)
        let expected = try fingerprint(Self.source)
        XCTAssertEqual(expected["rows public.orders"]?.hasPrefix("90000 "), true)
        XCTAssertEqual(expected["sequences"]?.contains("public.invoice_numbers=4242"), true)
        for (i, sizes) in [[1 << 20], [1, 7, 4096, 65_537, 300_001], [archive.count]].enumerated() {
            let db = "copy_\(i)"
            let r = try restorer(into: db)
            try restore(r, archive, sizes: sizes)
            XCTAssertTrue(r.isParallel, "no large objects, uncompressed: the data goes over the COPY connections")
            let got = try fingerprint(db)
            XCTAssertEqual(got.keys.sorted(), expected.keys.sorted())
            for key in expected.keys.sorted() { XCTAssertEqual(got[key], expected[key], "\(key) after a restore fed in cuts of \(sizes)") }
            XCTAssertEqual(try sessions(db), 0)
        }
        // ~8 MB of orders went out in 1 MiB batches over three connections: one COPY transaction each.
        let writers = try server().psql("copy_0", "SELECT count(DISTINCT xmin::text) FROM orders")
        XCTAssertGreaterThan(Int(writers) ?? 0, 1, "the large table was loaded by one session only")
    }

    func testLargeObjectsAndCompressedArchivesGoThroughOnePgRestore() throws {
        let pg = try server()
        try pg.psql("postgres", "DROP DATABASE IF EXISTS withlo")
        try pg.psql("postgres", "CREATE DATABASE withlo")
        try pg.psql("withlo", """
            CREATE TABLE docs (id int PRIMARY KEY, blob oid);
            INSERT INTO docs VALUES (1, lo_from_bytea(0, convert_to(repeat(E'large\\nobject ✓\\n', 20000), 'UTF8')));
            """)
        for (db, options) in [("withlo", ["-Z0"]), (Self.source, ["-Z6"])] {
            let target = "piped_\(db)"
            let r = try restorer(into: target)
            try restore(r, try dump(db, options), sizes: [65_536])
            XCTAssertFalse(r.isParallel, "\(db) \(options)")
            let expected = try fingerprint(db), got = try fingerprint(target)
            for key in expected.keys.sorted() { XCTAssertEqual(got[key], expected[key], "\(key) of \(db) \(options)") }
            XCTAssertEqual(try sessions(target), 0)
        }
    }

    func testTruncatedArchiveFailsAndLeavesNoSession() throws {
        let archive = try dump(Self.source)
        let r = try restorer(into: "cut")
        XCTAssertThrowsError(try restore(r, Array(archive.prefix(archive.count * 2 / 3)), sizes: [100_000])) { error in
            XCTAssertEqual((error as? DataToolsError)?.code, .malformedArchive, "\(error)")
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        XCTAssertEqual(try sessions("cut"), 0)
    }

    func testRefusedRowFailsNamingTheTable() throws {
        var archive = try dump(Self.source)
        // A row of orders whose customer (an int) becomes "x": same length, so the archive stays well formed.
        // The orders' data fills most of the archive: "\t2\t" past its middle is a customer column.
        let hit = try XCTUnwrap(find(Array("\t2\t".utf8), in: archive, from: archive.count / 2))
        archive[hit + 1] = UInt8(ascii: "x")
        let r = try restorer(into: "refused")
        XCTAssertThrowsError(try restore(r, archive, sizes: [1 << 20])) { error in
            XCTAssertTrue("\(error)".contains("public.orders"), "\(error)")
            XCTAssertTrue("\(error)".contains("invalid input syntax for type integer"), "\(error)")
        }
        XCTAssertEqual(try sessions("refused"), 0)
    }

    func testCancelStopsTheLoadAndLeavesNoSession() throws {
        let archive = try dump(Self.source)
        let r = try restorer(into: "cancelled")
        // Cancelled from another thread halfway through the data; the feeding goes on until it notices.
        let halfway = DispatchSemaphore(value: 0), cancelled = DispatchSemaphore(value: 0)
        let canceller = Thread {
            halfway.wait()
            r.cancel()
            cancelled.signal()
        }
        canceller.start()
        XCTAssertThrowsError(try archive.withUnsafeBytes { all in
            defer { r.close() }
            var off = 0
            while off < all.count {
                let n = min(256 << 10, all.count - off)
                try r.feed(UnsafeRawBufferPointer(rebasing: all[off..<(off + n)]))
                if off < all.count / 2 && off + n >= all.count / 2 {
                    halfway.signal()
                    cancelled.wait()
                }
                off += n
            }
            try r.finish()
        }) { error in
            XCTAssertTrue(error is CancellationError, "\(error)")
        }
        XCTAssertEqual(try sessions("cancelled"), 0)
    }

    private func find(_ needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard needle.count <= hay.count, from <= hay.count - needle.count else { return nil }
        var i = from
        while i <= hay.count - needle.count {
            if hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }
}
