import CLibPQ
import Foundation

/// Where PostgreSQL is: socket directory (or host), port, superuser.
public struct PGServer: Sendable, Codable {
    public var host: String
    public var port: Int
    public var user: String

    public init(host: String, port: Int, user: String) {
        self.host = host
        self.port = port
        self.user = user
    }

    /// The server a service of the stack is given: `AUTOMATE_CFG_PG_HOST` (default the run directory,
    /// where the stack's own server has its socket), `AUTOMATE_CFG_PG_PORT` (default 10145),
    /// `AUTOMATE_CFG_PG_USER` (default automate); an external server sets all three (`config/external.toml`).
    public init(environment env: [String: String]) {
        func cfg(_ k: String) -> String? { env["AUTOMATE_CFG_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        self.init(host: cfg("PG_HOST") ?? env["AUTOMATE_RUN_DIR"] ?? "/tmp", port: Int(cfg("PG_PORT") ?? "") ?? 10145,
                  user: cfg("PG_USER") ?? "automate")
    }

    public func conninfo(database: String) -> String {
        func q(_ s: String) -> String { "'" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'" }
        return "host=\(q(host)) port=\(port) user=\(q(user)) dbname=\(q(database)) connect_timeout=10 application_name='pg-sidecar-service'"
    }
}

/// A blocking libpq connection; use it from one thread at a time, never from the cooperative pool.
/// Only ``cancelRunningQuery()`` may be called from another thread while it works (libpq's PQcancel is
/// made for that), which is why it can be handed to the thread that will own it.
public final class PGConnection: @unchecked Sendable {  // used by one thread at a time; see above
    private let conn: OpaquePointer

    public init(_ server: PGServer, database: String = "postgres") throws {
        guard let c = PQconnectdb(server.conninfo(database: database)) else { throw DataToolsError(.database, "PQconnectdb returned nothing (out of memory?)") }
        if PQstatus(c) != CONNECTION_OK {
            let message = String(cString: PQerrorMessage(c)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(c)
            throw DataToolsError(.database, "cannot connect to PostgreSQL at \(server.host):\(server.port) database \"\(database)\": \(message)")
        }
        conn = c
        cancelHandle = PQgetCancel(c)
    }

    deinit {
        if let cancelHandle { PQfreeCancel(cancelHandle) }
        PQfinish(conn)
    }

    /// Made at connect time: PQcancel on it is safe from any thread while another runs a query.
    private let cancelHandle: OpaquePointer?

    /// Asks the server to cancel the statement this connection runs now (from any thread); the running
    /// `query` then throws (SQLSTATE 57014). A no-op when nothing runs.
    public func cancelRunningQuery() {
        guard let cancelHandle else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(cancelHandle, &buffer, Int32(buffer.count))
    }

    /// e.g. 150012 for 15.12.
    public var serverVersionNumber: Int { Int(PQserverVersion(conn)) }
    public var serverVersion: String {
        if let p = PQparameterStatus(conn, "server_version") { return String(cString: p) }
        return String(serverVersionNumber)
    }
    public var majorVersion: Int { serverVersionNumber / 10000 }

    /// Runs `sql` with text parameters; returns rows of optional strings.
    @discardableResult
    public func query(_ sql: String, _ params: [String] = []) throws -> [[String?]] {
        let cParams = params.map { strdup($0) }
        defer { cParams.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = cParams.map { UnsafePointer($0) }
        let res = pointers.withUnsafeMutableBufferPointer { buf in
            PQexecParams(conn, sql, Int32(params.count), nil, buf.baseAddress, nil, nil, 0)
        }
        guard let res else { throw DataToolsError(.database, lastError) }
        defer { PQclear(res) }
        let status = PQresultStatus(res)
        if status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK {
            throw Self.resultError(res)
        }
        var rows: [[String?]] = []
        let n = PQntuples(res), m = PQnfields(res)
        for i in 0..<n {
            var row: [String?] = []
            for j in 0..<m {
                row.append(PQgetisnull(res, i, j) != 0 ? nil : String(cString: PQgetvalue(res, i, j)))
            }
            rows.append(row)
        }
        return rows
    }

    /// Starts `statement`, a `COPY … FROM STDIN`; send its data with ``putCopyData(_:)``, then end it
    /// with ``endCopy(failing:)``.
    public func beginCopy(_ statement: String) throws {
        guard let res = PQexec(conn, statement) else { throw DataToolsError(.database, lastError) }
        defer { PQclear(res) }
        guard PQresultStatus(res) == PGRES_COPY_IN else {
            throw Self.resultError(res, context: statement.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// Sends COPY data (any cut: the server joins the pieces); blocks while the server is behind.
    public func putCopyData(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if PQputCopyData(conn, base.assumingMemoryBound(to: CChar.self), Int32(bytes.count)) != 1 {
            throw DataToolsError(.database, "sending COPY data: \(lastError)")
        }
    }

    /// Ends the COPY: commits its rows and returns how many the server copied, or with `message` makes the
    /// server fail it (nothing is kept). Throws the server's error when the data was refused.
    @discardableResult
    public func endCopy(failing message: String? = nil) throws -> Int64 {
        let sent = message.map { PQputCopyEnd(conn, $0) } ?? PQputCopyEnd(conn, nil)
        if sent != 1 { throw DataToolsError(.database, "ending COPY: \(lastError)") }
        var failure: DataToolsError?
        var rows: Int64 = 0
        while let res = PQgetResult(conn) {
            defer { PQclear(res) }
            if PQresultStatus(res) == PGRES_COMMAND_OK {
                rows += Int64(String(cString: PQcmdTuples(res))) ?? 0
            } else if failure == nil {
                failure = Self.resultError(res)
            }
        }
        if let failure, message == nil { throw failure }
        return rows
    }

    private var lastError: String { String(cString: PQerrorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines) }

    /// The server's error of a failed result, with its SQLSTATE (`context` first, when given).
    private static func resultError(_ res: OpaquePointer, context: String? = nil) -> DataToolsError {
        let message = String(cString: PQresultErrorMessage(res)).trimmingCharacters(in: .whitespacesAndNewlines)
        let state = PQresultErrorField(res, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        return DataToolsError(.database, context.map { "\($0): \(message)" } ?? message, sqlState: state)
    }

    public func listDatabases() throws -> [String] {
        try query("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname").compactMap { $0[0] }
    }

    public func databaseExists(_ name: String) throws -> Bool {
        try !query("SELECT 1 FROM pg_database WHERE datname = $1", [name]).isEmpty
    }

    public func databaseSize(_ name: String) throws -> Int64 {
        Int64(try query("SELECT pg_database_size($1)", [name]).first?[0] ?? "0") ?? 0
    }

    /// Exact row counts of every ordinary table outside the system schemas (connect to that database),
    /// then the large objects (``PGTableRowCount/largeObjects(_:)``).
    public func tableRowCounts() throws -> [PGTableRowCount] {
        let tables = try query("""
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
            ORDER BY 1, 2
            """)
        var out: [PGTableRowCount] = []
        for t in tables {
            let schema = t[0] ?? "", table = t[1] ?? ""
            let count = try query("SELECT count(*) FROM ONLY \(quoteIdent(schema)).\(quoteIdent(table))")
            out.append(PGTableRowCount(schema: schema, table: table, rows: Int64(count.first?[0] ?? "0") ?? 0))
        }
        let lo = try query("SELECT count(*) FROM pg_largeobject_metadata")
        out.append(.largeObjects(Int64(lo.first?[0] ?? "0") ?? 0))
        return out
    }
}

/// `"name"` with embedded quotes doubled: an SQL identifier.
public func quoteIdent(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
