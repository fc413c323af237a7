import DataTools
import Foundation
import SidecarTestSupport
import XCTest

/// `PGCustomArchiveCounter` against archives written by the real pg_dump 15 of a real database: its counts
/// must equal `count(*)`, however the bytes are cut into chunks, and a cut or corrupt archive must fail
/// naming the byte where.
final class PGCustomArchiveCounterTests: SharedPostgresTestCase {
    static let db = "counts"

    /// Several schemas; an empty table; text with embedded newlines, tabs, backslashes and `\.`; rows that
    /// are empty COPY lines (one empty-string column; no columns at all); ~6 MB of rows; a quoted name; a
    /// partitioned table; an unlogged table; large objects (empty ones, and one full of newlines).
    override class func makeDatabases(_ pg: PostgresServer) throws {
        try pg.psql("postgres", "CREATE DATABASE \(db)")
        try pg.psql(db, """
            CREATE TABLE empty_t (id int);
            CREATE TABLE texts (id int, body text);
            INSERT INTO texts VALUES (1, E'line1\\nline2\\nline3'), (2, E'tab\\there'), (3, E'back\\\\slash'), (4, E'\\\\.'),
              (5, E'\\\\'), (6, ''), (7, NULL), (8, E'\\r\\n'), (9, E'ends with a newline\\n'), (10, E'\\n\\\\.\\n');
            CREATE TABLE blanks (t text);
            INSERT INTO blanks VALUES (''), (''), (NULL), ('');
            CREATE TABLE dotlines (t text);
            INSERT INTO dotlines VALUES (E'\\\\.'), (E'\\\\.\\n\\\\.'), ('.');
            CREATE TABLE nocols ();
            INSERT INTO nocols SELECT FROM generate_series(1, 3);
            CREATE TABLE big (id bigint, payload text);
            INSERT INTO big SELECT g, md5(g::text) || E'\\t' || md5((g * 3)::text) FROM generate_series(1, 80000) g;
            CREATE SCHEMA "Other Schema";
            CREATE TABLE "Other Schema"."Quoted ""Name"" Täble" (x int);
            INSERT INTO "Other Schema"."Quoted ""Name"" Täble" SELECT generate_series(1, 17);
            CREATE SCHEMA audit;
            CREATE TABLE audit.events (id int, what jsonb);
            INSERT INTO audit.events SELECT g, jsonb_build_object('n', g, 'note', E'multi\\nline') FROM generate_series(1, 1000) g;
            CREATE TABLE measurements (id int, at date) PARTITION BY RANGE (at);
            CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            INSERT INTO measurements SELECT g, '2025-06-01'::date + g FROM generate_series(1, 300) g;
            CREATE UNLOGGED TABLE scratch (v int);
            INSERT INTO scratch SELECT generate_series(1, 5);
            SELECT lo_create(0) FROM generate_series(1, 3);
            SELECT lo_from_bytea(0, convert_to(repeat(E'large\\nobject\\n', 50000), 'UTF8'));
            """)
    }

    /// `pg_dump -Fc <compression>` of the test database, read back whole.
    func dump(_ pg: PostgresServer, compression: String = "-Z0") throws -> [UInt8] {
        let file = pg.dir + "/dump\(compression).fc"
        if !FileManager.default.fileExists(atPath: file) {
            try Fixture.run(PostgresServer.bindir + "/pg_dump", ["-Fc", compression, "-h", pg.dir, "-p", String(pg.port), "-U", pg.user, "-d", Self.db, "-f", file])
        }
        return Array(try Data(contentsOf: URL(fileURLWithPath: file)))
    }

    /// `count(*)` of every ordinary table (partitioned parents hold no rows of their own and have no data
    /// in a dump), keyed `schema.table`, and the number of large objects.
    func expectedCounts() throws -> ([String: Int64], Int64) {
        let pg = try server()
        let conn = try PGConnection(PGServer(host: pg.socketDir, port: pg.port, user: pg.user), database: Self.db)
        let parents = Set(try conn.query("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'")
            .compactMap { $0[0] })
        var out: [String: Int64] = [:]
        var largeObjects: Int64 = -1
        for t in try conn.tableRowCounts() {
            if t.schema == "pg_catalog" && t.table == "pg_largeobject_metadata" { largeObjects = t.rows; continue }
            if !parents.contains("\(t.schema).\(t.table)") { out["\(t.schema).\(t.table)"] = t.rows }
        }
        return (out, largeObjects)
    }


    func count(_ bytes: [UInt8], chunk size: Int) throws -> (PGCustomArchiveCounter, [String: Int64]) {
        var counter = PGCustomArchiveCounter()
        try feed(&counter, bytes[...], chunk: size)
        var got: [String: Int64] = [:]
        for t in try counter.finish() {
            XCTAssertNil(got["\(t.schema).\(t.table)"], "\(t.schema).\(t.table) counted twice")
            got["\(t.schema).\(t.table)"] = t.rows
        }
        return (counter, got)
    }

    func testCountsEqualCountStarForEveryChunkSize() throws {
        let archive = try dump(try server())
        let (expected, largeObjects) = try expectedCounts()
        XCTAssertGreaterThan(archive.count, 5 << 20, "the big table makes a dump of several MB")
        XCTAssertEqual(expected["public.big"], 80000)
        XCTAssertEqual(expected["public.texts"], 10)
        XCTAssertEqual(expected["public.nocols"], 3)
        XCTAssertEqual(expected["Other Schema.Quoted \"Name\" Täble"], 17)
        XCTAssertEqual(expected["public.empty_t"], 0)
        XCTAssertEqual(largeObjects, 4)
        for size in [1, 7, 4093, 65536, archive.count] {
            let (counter, got) = try count(archive, chunk: size)
            XCTAssertEqual(got, expected, "chunks of \(size) bytes")
            XCTAssertEqual(counter.largeObjects, largeObjects, "chunks of \(size) bytes")
            XCTAssertEqual(counter.bytesRead, Int64(archive.count))
            XCTAssertEqual(counter.archiveVersion, "1.14.0")  // pg_dump 15
            XCTAssertEqual(counter.databaseName, Self.db)
            XCTAssertEqual(counter.dumpVersion?.hasPrefix("15."), true, counter.dumpVersion ?? "no dump version")
            XCTAssertEqual(counter.serverVersion?.hasPrefix("15."), true, counter.serverVersion ?? "no server version")
        }
    }

    func testTruncatedArchiveFailsNamingTheOffset() throws {
        let archive = try dump(try server())
        var probe = PGCustomArchiveCounter()
        try feed(&probe, archive[...], chunk: 65536)
        let dataOffset = Int(try XCTUnwrap(probe.dataOffset))
        // In the magic, the header, the TOC, exactly between the TOC and the first block, in a data chunk,
        // one byte short of the end.
        for cut in [3, 20, dataOffset - 3, dataOffset, archive.count / 2, archive.count - 1] {
            var counter = PGCustomArchiveCounter()
            try feed(&counter, archive[..<cut], chunk: 4093)
            XCTAssertThrowsError(try counter.finish(), "cut at \(cut)") { error in
                guard let e = error as? DataToolsError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.code, .malformedArchive)
                XCTAssertEqual(e.archiveOffset, Int64(cut))
                XCTAssertTrue(e.message.contains("ends at byte \(cut),"), e.message)
                XCTAssertTrue(e.message.contains("truncated"), e.message)
            }
        }
    }

    func testCorruptArchiveFailsNamingTheOffset() throws {
        let archive = try dump(try server())
        var probe = PGCustomArchiveCounter()
        try feed(&probe, archive[...], chunk: 65536)
        let dataOffset = Int(try XCTUnwrap(probe.dataOffset))
        // (offset to change, new byte, code, offset the error names, what its message says)
        let cases: [(Int, UInt8, DataToolsErrorCode, Int, String)] = [
            (0, UInt8(ascii: "X"), .unsupportedArchive, 0, "PGDMP"),
            (6, 9, .unsupportedArchive, 6, "1.9"),  // the minor version
            (dataOffset, 9, .malformedArchive, dataOffset, "data block type"),  // the first block's type
            (dataOffset + 4, 0x7F, .malformedArchive, dataOffset + 1, "which the TOC does not list"),  // its dump ID
            (dataOffset + 6, 7, .malformedArchive, dataOffset + 6, "sign byte"),  // its first chunk length
        ]
        for (at, byte, code, reported, says) in cases {
            var bytes = archive
            XCTAssertNotEqual(bytes[at], byte)
            bytes[at] = byte
            var counter = PGCustomArchiveCounter()
            XCTAssertThrowsError(try feed(&counter, bytes[...], chunk: 1000), "byte \(at) changed") { error in
                guard let e = error as? DataToolsError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.code, code, e.message)
                XCTAssertEqual(e.archiveOffset, Int64(reported), e.message)
                XCTAssertTrue(e.message.contains("byte \(reported)"), e.message)
                XCTAssertTrue(e.message.contains(says), e.message)
            }
            // Once failed, it stays failed.
            XCTAssertThrowsError(try counter.finish()) { XCTAssertEqual(($0 as? DataToolsError)?.code, code) }
        }
    }

    func testCompressedArchiveIsRefusedNamingTheCompression() throws {
        let archive = try dump(try server(), compression: "-Z6")
        var counter = PGCustomArchiveCounter()
        XCTAssertThrowsError(try feed(&counter, archive[...], chunk: 65536)) { error in
            guard let e = error as? DataToolsError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.code, .compressedArchive)
            XCTAssertEqual(e.archiveOffset, 11)  // after magic, version, int size, offset size, format
            XCTAssertTrue(e.message.contains("gzip (level 6)"), e.message)
            XCTAssertTrue(e.message.contains("-Z0"), e.message)
        }
    }
}

/// The layouts of the archive versions the pg_dump here (15: 1.14) does not write — 1.12 and 1.13 (no
/// table access method), 1.15 (compression algorithm byte), 1.16 (relkind) — written the way
/// pg_backup_archiver.c's WriteHead/WriteToc and pg_backup_custom.c write them.
final class PGCustomArchiveVersionTests: XCTestCase {
    struct Writer {
        var bytes: [UInt8] = []
        let minor: UInt8

        mutating func byte(_ b: UInt8) { bytes.append(b) }
        mutating func int(_ v: Int) {
            byte(v < 0 ? 1 : 0)
            var u = UInt32(abs(v))
            for _ in 0..<4 { byte(UInt8(u & 0xFF)); u >>= 8 }
        }
        mutating func str(_ s: String?) {
            guard let s else { return int(-1) }
            int(s.utf8.count)
            bytes += Array(s.utf8)
        }
        mutating func header(compression: Int = 0) {
            bytes += Array("PGDMP".utf8)
            byte(1); byte(minor); byte(0); byte(4); byte(8); byte(1)
            if minor >= 15 { byte(UInt8(compression)) } else { int(compression) }
            for v in [12, 30, 4, 2, 11, 126, 0] { int(v) }  // sec, min, hour, mday, mon, year, isdst
            str("shop"); str("17.2"); str("17.2")
        }
        mutating func entry(_ id: Int, hasData: Bool, tag: String, desc: String, namespace: String?, deps: [Int]) {
            int(id); int(hasData ? 1 : 0); str("1259"); str(String(16384 + id)); str(tag); str(desc); int(3)
            str(""); str(""); str(desc == "TABLE DATA" ? "COPY \(tag) FROM stdin;\n" : ""); str(namespace); str("")
            if minor >= 14 { str("heap") }
            if minor >= 16 { int(Int(UInt8(ascii: "r"))) }
            str("owner"); str("false")
            for d in deps { str(String(d)) }
            str(nil)
            byte(hasData ? 1 : 3)  // K_OFFSET_POS_NOT_SET, K_OFFSET_NO_DATA
            for _ in 0..<8 { byte(0) }
        }
        mutating func chunks(_ chunks: [String]) {
            for c in chunks { int(c.utf8.count); bytes += Array(c.utf8) }
            int(0)
        }
    }

    /// An archive of `minor` with two tables (rows cut across chunks, and an end marker cut in three) and
    /// two large objects.
    func archive(minor: UInt8, compression: Int = 0) -> [UInt8] {
        var w = Writer(minor: minor)
        w.header(compression: compression)
        w.int(5)
        w.entry(1, hasData: false, tag: "ENCODING", desc: "ENCODING", namespace: nil, deps: [])
        w.entry(2, hasData: true, tag: "orders", desc: "TABLE DATA", namespace: "public", deps: [1])
        w.entry(3, hasData: true, tag: "big \"one\"", desc: "TABLE DATA", namespace: "s", deps: [1, 2])
        w.entry(4, hasData: true, tag: "BLOBS", desc: "BLOBS", namespace: nil, deps: [])
        w.entry(5, hasData: true, tag: "empty", desc: "TABLE DATA", namespace: "public", deps: [])
        w.byte(1); w.int(2); w.chunks(["1\tx\\ny\n2\t", "z\n\n", "3\t\\\\.\n", "\\.\n\n\n"])
        w.byte(1); w.int(3); w.chunks(["a\n\\", ".", "\n\n\n"])
        w.byte(3); w.int(4)
        w.int(16500); w.chunks(["lines\n\n\n"])
        w.int(16501); w.chunks([])
        w.int(0)
        w.byte(1); w.int(5); w.chunks([])
        return w.bytes
    }

    func testEveryArchiveVersionFromPgDump11To17() throws {
        for minor: UInt8 in 12...16 {
            let bytes = archive(minor: minor)
            for size in [1, 3, bytes.count] {
                var counter = PGCustomArchiveCounter()
                try feed(&counter, bytes[...], chunk: size)
                let got = try counter.finish()
                XCTAssertEqual(got, [
                    .init(schema: "public", table: "orders", rows: 4),
                    .init(schema: "s", table: "big \"one\"", rows: 1),
                    .init(schema: "public", table: "empty", rows: 0),
                ], "1.\(minor), chunks of \(size)")
                XCTAssertEqual(counter.largeObjects, 2)
                XCTAssertEqual(counter.archiveVersion, "1.\(minor).0")
                XCTAssertEqual(counter.databaseName, "shop")
            }
        }
    }

    func testUnknownVersionsAndCompressionAreRefused() throws {
        for minor: UInt8 in [11, 17] {
            var counter = PGCustomArchiveCounter()
            XCTAssertThrowsError(try archive(minor: minor).withUnsafeBytes { try counter.consume($0) }) { error in
                XCTAssertEqual((error as? DataToolsError)?.code, .unsupportedArchive)
                XCTAssertTrue("\(error)".contains("1.\(minor)"), "\(error)")
            }
        }
        for (minor, compression, name) in [(UInt8(15), 3, "zstd"), (15, 2, "lz4"), (16, 1, "gzip"), (13, -1, "gzip (default level)")] {
            var counter = PGCustomArchiveCounter()
            XCTAssertThrowsError(try archive(minor: minor, compression: compression).withUnsafeBytes { try counter.consume($0) }) { error in
                XCTAssertEqual((error as? DataToolsError)?.code, .compressedArchive)
                XCTAssertEqual((error as? DataToolsError)?.archiveOffset, 11)
                XCTAssertTrue("\(error)".contains("compressed with \(name)"), "\(error)")
            }
        }
    }

    func testDataBlockMissingAtTheEndIsTruncation() throws {
        let bytes = archive(minor: 16)
        // The last block (dump ID 5, public.empty) is 1 + 5 + 5 bytes: without it the archive ends between blocks.
        var counter = PGCustomArchiveCounter()
        try bytes.withUnsafeBytes { try counter.consume(UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count - 11])) }
        XCTAssertThrowsError(try counter.finish()) { error in
            let e = error as? DataToolsError
            XCTAssertEqual(e?.code, .malformedArchive)
            XCTAssertEqual(e?.archiveOffset, Int64(bytes.count - 11))
            XCTAssertTrue("\(error)".contains("dump ID 5 (table public.empty)"), "\(error)")
        }
    }
}

/// Feeds `bytes` to `counter` in chunks of `size` (the last one shorter).
func feed(_ counter: inout PGCustomArchiveCounter, _ bytes: ArraySlice<UInt8>, chunk size: Int) throws {
    try bytes.withUnsafeBytes { all in
        var offset = 0
        while offset < all.count {
            let n = min(size, all.count - offset)
            try counter.consume(UnsafeRawBufferPointer(rebasing: all[offset..<offset + n]))
            offset += n
        }
    }
}
