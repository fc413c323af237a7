import DataTools
import ESSidecar
import Foundation
import S3Client

/// One look at an external server as the stack's services see it (the same environment: host, port and
/// user from `AUTOMATE_CFG_*`, libpq's `PGSSLMODE`/`PGSSLROOTCERT`/`PGPASSFILE`, the search client's CA and
/// credentials), summed up in one line that says what works (reachable, TLS verified, version) or names
/// what does not: the host cannot be reached, the certificate is not trusted or does not name the host,
/// the password is wrong.
public struct ExternalCheck: Sendable, Equatable {
    /// ok: usable; warning: usable with a caveat (old client tools); critical: not usable.
    public enum Outcome: Int32, Sendable {
        case ok = 0, warning = 1, critical = 2
    }

    public var outcome: Outcome
    public var line: String

    public init(_ outcome: Outcome, _ line: String) {
        self.outcome = outcome
        self.line = line
    }

    /// The PostgreSQL server of `environment` (``PGServer/init(environment:)``, as the services find it);
    /// blocks up to its connect timeout. `clientToolsRoot`: where `<major>/bin/pg_dump` live, to warn when
    /// the server is newer than them.
    public static func postgresql(environment env: [String: String], clientToolsRoot: String = "/usr/lib/postgresql") -> ExternalCheck {
        let server = PGServer(environment: env)
        let (host, port, user) = (server.host, server.port, server.user)
        let mode = env["PGSSLMODE"] ?? "prefer"
        let at = "PostgreSQL at \(host):\(port)"
        let connection: PGConnection
        do {
            connection = try PGConnection(server, database: "postgres")
        } catch {
            return ExternalCheck(.critical, Self.explainPostgreSQL(String(describing: error), at: at, host: host, user: user, environment: env))
        }
        do {
            let row = try connection.query(
                "SELECT current_setting('server_version'), s.ssl, s.version FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()").first
            let version = (row?[0] ?? nil) ?? connection.serverVersion
            let tls = (row?[1] ?? nil) == "t"
            var line = "PostgreSQL \(version) at \(host):\(port) as \(user), "
            line += tls ? "TLS \((row?[2] ?? nil) ?? "") \(mode.hasPrefix("verify") ? "verified (\(mode))" : "not verified (sslmode \(mode))")" : "no TLS (sslmode \(mode))"
            let major = connection.majorVersion
            let newest = PGClientTools.newestMajor(root: clientToolsRoot)
            if let newest, newest < major {
                return ExternalCheck(.warning, line + "; but this machine's client tools go up to PostgreSQL \(newest) (\(clientToolsRoot)/\(newest)/bin): install postgresql-client-\(major), backups need pg_dump \(major) or newer")
            }
            return ExternalCheck(.ok, line)
        } catch {
            return ExternalCheck(.critical, "\(at): \(error)")
        }
    }

    /// One line for libpq's connection failure, naming the cause an operator fixes.
    static func explainPostgreSQL(_ message: String, at: String, host: String, user: String, environment env: [String: String]) -> String {
        let text = message.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\t", with: " ")
        let detail = text.range(of: "\": ").map { String(text[$0.upperBound...]) } ?? text
        let lower = text.lowercased()
        if lower.contains("password authentication failed") || lower.contains("no password supplied") {
            return "authentication: \(at) refused the password of user \(user) (password_file in config/external.toml): \(detail)"
        }
        if lower.contains("certificate verify failed") || lower.contains("self-signed certificate") || lower.contains("unable to get local issuer") {
            return "TLS: the certificate of \(at) is not signed by the CA in ca_file (\(env["PGSSLROOTCERT"] ?? "none")): \(detail)"
        }
        if lower.contains("does not match host name") {
            return "TLS: the certificate of \(at) does not name \(host) (sslmode verify-full): \(detail)"
        }
        if lower.contains("server does not support ssl") {
            return "TLS: \(at) does not offer TLS, and sslmode \(env["PGSSLMODE"] ?? "") needs it"
        }
        if lower.contains("connection refused") || lower.contains("could not translate host name") || lower.contains("timeout expired")
            || lower.contains("no route to host") || lower.contains("network is unreachable")
        {
            return "unreachable: cannot reach \(at): \(detail)"
        }
        if lower.contains("no pg_hba.conf entry") {
            return "refused: \(at) has no pg_hba.conf entry for this machine and user \(user): \(detail)"
        }
        return "\(at): \(detail)"
    }

    /// The search cluster at `url` with `access`; blocks up to the connect timeout.
    public static func search(url: String, access: SearchEngine.Access) -> ExternalCheck {
        let engine = SearchEngine(url: url, access: access)
        do {
            let (status, body) = try engine.raw("GET", "/", body: nil, contentType: "")
            if status == 401 || status == 403 {
                return ExternalCheck(.critical, "authentication: the search cluster at \(url) refused the credentials (HTTP \(status)\(access.authorization == nil ? ", and none were given" : ""))")
            }
            guard (200..<300).contains(status),
                  let info = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                  let version = info["version"] as? [String: Any]
            else {
                return ExternalCheck(.critical, "the search cluster at \(url) answered HTTP \(status), not an OpenSearch/Elasticsearch API")
            }
            let number = version["number"] as? String ?? "?"
            let distribution = version["distribution"] as? String ?? "elasticsearch"
            let tls = url.hasPrefix("https://") ? "TLS verified (\(access.caFile.map { "ca_file \($0)" } ?? "system CAs"))" : "no TLS (http)"
            return ExternalCheck(.ok, "\(distribution) \(number) at \(url), \(tls)")
        } catch {
            let text = "\(error)"
            let lower = text.lowercased()
            if lower.contains("ssl") || lower.contains("certificate") {
                return ExternalCheck(.critical, "TLS: the certificate of the search cluster at \(url) is not trusted (ca_file \(access.caFile ?? "none")) or does not name its host: \(text)")
            }
            return ExternalCheck(.critical, "unreachable: \(text)")
        }
    }
}
