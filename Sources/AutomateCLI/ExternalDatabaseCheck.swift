import AutomateManifest
import AutomateSupervisor
import DataTools
import Foundation

/// Before a restore into a stack whose PostgreSQL is external (`config/external.toml`): the databases the
/// backup holds must be absent or empty on that server, unless `--force` says to replace them. Nothing
/// of the home is looked at here; the server is reached as the stack's services reach it.
struct ExternalDatabaseCheck {
    let settings: ExternalSettings.PostgreSQL

    /// `database (N tables)` for each of `names` that exists on the server with tables of its own.
    /// - Throws: ``CLIError`` (exit 2) when the server cannot be reached or refuses, naming why.
    func occupied(_ names: [String]) throws -> [String] {
        // libpq reads TLS and the password from the environment: this process's, as the operator.
        for (key, value) in try CLIError.reporting(exitCode: 2, { try settings.operatorEnvironment() }) { setenv(key, value, 1) }
        let server = PGServer(host: settings.host, port: settings.port, user: settings.user)
        let at = "the external PostgreSQL at \(settings.host):\(settings.port) (config/external.toml)"
        do {
            let admin = try PGConnection(server, database: "postgres")
            let present = Set(try admin.query("SELECT datname FROM pg_database").compactMap { $0[0] ?? nil })
            var found: [String] = []
            for name in names where present.contains(name) {
                let db = try PGConnection(server, database: name)
                let count = try db.query("""
                    SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname NOT LIKE 'pg_toast%'
                    """).first?[0] ?? nil
                if let count, count != "0" { found.append("\(name) (\(count) table\(count == "1" ? "" : "s"))") }
            }
            return found
        } catch {
            throw CLIError("cannot check \(at) before the restore: \(error); nothing was changed", exitCode: 2)
        }
    }
}
