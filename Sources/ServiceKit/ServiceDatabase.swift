import Foundation
import DataTools
import Operations
import S3Client

/// A domain service's own PostgreSQL database on the stack's server: created on first use, reached over
/// the server's Unix socket, one connection used by one caller at a time (reconnecting after a failure).
public final class ServiceDatabase: @unchecked Sendable {
    public let server: PGServer
    public let name: String
    private let lock = NSLock()
    private var connection: PGConnection?

    public init(server: PGServer, name: String) {
        self.server = server
        self.name = name
    }

    /// The stack's server from the environment (``PGServer/init(environment:)``).
    public static func server(from env: [String: String] = ProcessInfo.processInfo.environment) -> PGServer {
        PGServer(environment: env)
    }

    /// Creates the database when it is missing, then runs `schema` (idempotent statements) in it.
    public func prepare(schema: [String]) async throws {
        let server = self.server, name = self.name
        try await runBlocking("automate.db") { _ in
            let admin = try PGConnection(server, database: "postgres")
            // datconnlimit -2: a DROP DATABASE that was interrupted (PostgreSQL stopped mid-restore) left it
            // invalid; nothing can use it, so it is dropped and made again (a restore brings the data back).
            let state = try admin.query("SELECT datconnlimit FROM pg_database WHERE datname = $1", [name]).first
            if state?[0] == "-2" {
                try admin.query("DROP DATABASE IF EXISTS \(quoteIdent(name))")
            }
            if state == nil || state?[0] == "-2" {
                do { try admin.query("CREATE DATABASE \(quoteIdent(name))") } catch let e as DataToolsError where e.sqlState == "42P04" {}
            }
        }
        for statement in schema { _ = try await query(statement) }
    }

    /// Runs one statement with `$1`-style parameters; rows as text. A connection that was lost (the
    /// server restarted, a restore replaced the database) is replaced and the statement tried once more.
    @discardableResult
    public func query(_ sql: String, _ params: [String] = []) async throws -> [[String?]] {
        try await runBlocking("automate.db") { [self] _ in
            try lock.withLock {
                for attempt in 0..<2 {
                    do {
                        if connection == nil { connection = try PGConnection(server, database: name) }
                        return try connection!.query(sql, params)
                    } catch let e as DataToolsError where e.code == .database {
                        let state = e.sqlState ?? ""
                        let lost = state.isEmpty || state.hasPrefix("08") || state.hasPrefix("57") || state == "3D000"
                        guard lost else { throw e }
                        connection = nil
                        if attempt == 1 { throw e }
                    }
                }
                throw KitError(.failed, "\(name): no connection")
            }
        }
    }
}
