import Foundation
import TOMLKit

/// `<home>/config/external.toml`: PostgreSQL and search clusters the stack uses instead of launching its
/// own `automate-postgresql` and `automate-search` (in the spirit of chef-automate's external settings).
///
/// ```toml
/// [postgresql]
/// host = "db.internal"        # the CA must vouch for this name (verify-full)
/// port = 5432
/// user = "automate"
/// password_file = "/var/opt/automate/secrets/pg-password"   # 0600
/// ca_file = "/etc/automate/db-ca.pem"
/// sslmode = "verify-full"     # the default
///
/// [search]
/// url = "https://search.internal:9200"
/// ca_file = "/etc/automate/search-ca.pem"
/// username = "automate"
/// password_file = "/var/opt/automate/secrets/search-password"
/// ```
///
/// Both tables are optional; a missing file means neither. Every problem is reported with the file, line
/// and key.
public struct ExternalSettings: Sendable, Equatable {
    /// Which stack service an external server stands in for (`[service] external` in its manifest).
    public enum Kind: String, Sendable, CaseIterable {
        case postgresql, search
    }

    /// `[postgresql]`: a PostgreSQL server the stack's databases live on.
    public struct PostgreSQL: Sendable, Equatable {
        /// Host name or address; with `verify-full` the server's certificate must name it.
        public var host: String
        public var port: Int = 5432
        /// The role every service connects as; it needs `CREATEDB` (the stack creates its databases).
        public var user: String
        /// A file holding the password (its first line), mode 0600; nil: no password (a client certificate).
        public var passwordFile: String?
        /// The CA that signed the server's certificate (needed by `verify-ca` and `verify-full`).
        public var caFile: String?
        /// A client certificate and its key, both or neither.
        public var certFile: String?
        public var keyFile: String?
        /// libpq's `sslmode`; default `verify-full`.
        public var sslMode: String = "verify-full"
        /// libpq's `connect_timeout` in seconds. Default 10.
        public var connectTimeout: Int = 10

        /// libpq's variables for the operator's own connection (`automate psql`, a restore's checks): the
        /// operator's files as named, the password read from `password_file` into `PGPASSWORD`.
        /// - Throws: ``SecretFileCopy/ReadError`` naming `password_file` when it cannot be read or is empty.
        public func operatorEnvironment() throws -> [String: String] {
            var env = ["PGSSLMODE": sslMode, "PGCONNECT_TIMEOUT": String(connectTimeout)]
            if let caFile { env["PGSSLROOTCERT"] = caFile }
            if let certFile, let keyFile {
                env["PGSSLCERT"] = certFile
                env["PGSSLKEY"] = keyFile
            }
            if let passwordFile { env["PGPASSWORD"] = try SecretFileCopy.secret(inFile: passwordFile) }
            return env
        }
    }

    /// `[search]`: an OpenSearch/Elasticsearch-API cluster.
    public struct Search: Sendable, Equatable {
        /// `http(s)://host[:port]`.
        public var url: String
        /// The CA of an https cluster; nil: the system's trust store.
        public var caFile: String?
        /// Basic authentication: user name and a file holding the password (its first line), 0600.
        public var username: String?
        public var passwordFile: String?
        /// Or an API key (`Authorization: ApiKey <key>`) from a file, 0600.
        public var apiKeyFile: String?
    }

    public var postgresql: PostgreSQL?
    public var search: Search?
    /// The file the settings came from.
    public var path: String

    /// libpq's `sslmode` values.
    public static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    public init(postgresql: PostgreSQL? = nil, search: Search? = nil, path: String) {
        self.postgresql = postgresql
        self.search = search
        self.path = path
    }

    /// True when the settings name the external server of `kind`.
    public func isSet(_ kind: Kind) -> Bool {
        switch kind {
        case .postgresql: postgresql != nil
        case .search: search != nil
        }
    }

    /// Reads `path`; nil when there is no such file.
    /// - Throws: ``ManifestErrors`` naming the file, line and key of every problem.
    public static func load(path: String) throws(ManifestErrors) -> ExternalSettings? {
        guard let contents = try TOMLSource.read(path: path) else { return nil }
        return try parse(path: path, contents: contents)
    }

    /// Parses the settings' text; files named in them are checked to exist with a private mode.
    public static func parse(path: String, contents: String) throws(ManifestErrors) -> ExternalSettings {
        let root = try TOMLSource.table(path: path, contents: contents)
        var reader = Reader(path: path, locator: TOMLKeyLocator(text: contents))
        var settings = ExternalSettings(path: path)
        for key in root.keys where Kind(rawValue: key) == nil {
            var message = "unknown \(root[key]?.table != nil ? "table [\(key)]" : "key \"\(key)\""): external.toml holds [postgresql] and [search]"
            if let near = NameRules.suggestion(for: key, among: Kind.allCases.map(\.rawValue)) { message += " (did you mean [\(near)]?)" }
            reader.report([key], message)
        }
        if let value = root["postgresql"] {
            if let table = value.table { settings.postgresql = reader.postgresql(table) } else { reader.report(["postgresql"], "expected a table") }
        }
        if let value = root["search"] {
            if let table = value.table { settings.search = reader.search(table) } else { reader.report(["search"], "expected a table") }
        }
        if !reader.diagnostics.isEmpty { throw ManifestErrors(diagnostics: reader.diagnostics) }
        return settings
    }

    /// Reads the two tables, collecting every problem.
    private struct Reader {
        let path: String
        let locator: TOMLKeyLocator
        var diagnostics: [ManifestDiagnostic] = []

        init(path: String, locator: TOMLKeyLocator) {
            self.path = path
            self.locator = locator
        }

        mutating func report(_ keyPath: [String], _ message: String) {
            diagnostics.append(ManifestDiagnostic(
                file: path, line: locator.line(of: keyPath), field: keyPath.joined(separator: "."), message: message))
        }

        mutating func checkKeys(_ table: TOMLTable, _ name: String, _ known: [String]) {
            for key in table.keys where !known.contains(key) {
                var message = "unknown key \"\(key)\" in [\(name)]"
                if let near = NameRules.suggestion(for: key, among: known) { message += " (did you mean \"\(near)\"?)" }
                else { message += "; known keys: " + known.joined(separator: ", ") }
                report([name, key], message)
            }
        }

        mutating func string(_ table: TOMLTable, _ path: [String], required: Bool = false) -> String? {
            guard let value = table[path.last!] else {
                if required { report(path, "missing required key \"\(path.last!)\"") }
                return nil
            }
            guard let s = value.string else {
                report(path, "expected a string, found \(ManifestFileDecoder.typeName(value))")
                return nil
            }
            if s.isEmpty || s.contains(where: { $0.isWhitespace || $0.isNewline }) {
                report(path, "\"\(s)\" must not be empty or hold spaces")
                return nil
            }
            return s
        }

        mutating func int(_ table: TOMLTable, _ path: [String], in range: ClosedRange<Int>) -> Int? {
            guard let value = table[path.last!] else { return nil }
            guard let i = value.int, range.contains(i) else {
                report(path, "expected an integer from \(range.lowerBound) to \(range.upperBound), found \(value.int.map(String.init) ?? ManifestFileDecoder.typeName(value))")
                return nil
            }
            return i
        }

        /// A file the supervisor reads and copies for each service: absolute, present, a regular file, and
        /// (`secret`) readable by its owner only.
        mutating func file(_ table: TOMLTable, _ path: [String], secret: Bool) -> String? {
            guard let file = string(table, path) else { return nil }
            guard file.hasPrefix("/") else {
                report(path, "\"\(file)\" must be an absolute path")
                return nil
            }
            var info = stat()
            guard stat(file, &info) == 0 else {
                // A reader that may not look (a service loading the stack's manifests as its own user)
                // leaves the check to the supervisor, which reads the file.
                if errno == EACCES { return file }
                report(path, "\(file): \(String(cString: strerror(errno)))")
                return nil
            }
            guard info.st_mode & S_IFMT == S_IFREG else {
                report(path, "\(file) is not a regular file")
                return nil
            }
            if secret && info.st_mode & 0o077 != 0 {
                report(path, "\(file) may be read by others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 \(file)")
                return nil
            }
            return file
        }

        mutating func postgresql(_ t: TOMLTable) -> PostgreSQL? {
            let name = "postgresql"
            checkKeys(t, name, ["host", "port", "user", "password_file", "ca_file", "cert_file", "key_file", "sslmode", "connect_timeout"])
            let host = string(t, [name, "host"], required: true)
            let user = string(t, [name, "user"], required: true)
            var pg = PostgreSQL(host: host ?? "", user: user ?? "")
            if let p = int(t, [name, "port"], in: 1...65535) { pg.port = p }
            if let mode = string(t, [name, "sslmode"]) {
                if sslModes.contains(mode) { pg.sslMode = mode } else {
                    report([name, "sslmode"], "\"\(mode)\" is not one of \(sslModes.joined(separator: ", "))")
                }
            }
            pg.passwordFile = file(t, [name, "password_file"], secret: true)
            pg.caFile = file(t, [name, "ca_file"], secret: false)
            pg.certFile = file(t, [name, "cert_file"], secret: false)
            pg.keyFile = file(t, [name, "key_file"], secret: true)
            if let c = int(t, [name, "connect_timeout"], in: 2...600) { pg.connectTimeout = c }
            if pg.sslMode.hasPrefix("verify"), t["ca_file"] == nil {
                report([name, "sslmode"], "sslmode \(pg.sslMode) checks the server's certificate: give ca_file, the CA that signed it")
            }
            if (t["cert_file"] == nil) != (t["key_file"] == nil) {
                report([name, t["cert_file"] == nil ? "key_file" : "cert_file"], "a client certificate needs both cert_file and key_file")
            }
            if t["password_file"] == nil && t["cert_file"] == nil {
                report([name], "give password_file (SCRAM) or cert_file and key_file (a client certificate)")
            }
            guard host != nil, user != nil else { return nil }
            return pg
        }

        mutating func search(_ t: TOMLTable) -> Search? {
            let name = "search"
            checkKeys(t, name, ["url", "ca_file", "username", "password_file", "api_key_file"])
            guard var url = string(t, [name, "url"], required: true) else { return nil }
            while url.hasSuffix("/") { url.removeLast() }
            guard let parts = URLComponents(string: url), let scheme = parts.scheme, ["http", "https"].contains(scheme),
                  parts.host?.isEmpty == false, parts.query == nil
            else {
                report([name, "url"], "\"\(url)\" is not an http:// or https:// URL of a cluster (https://search.internal:9200)")
                return nil
            }
            var search = Search(url: url)
            search.caFile = file(t, [name, "ca_file"], secret: false)
            if search.caFile != nil && scheme != "https" {
                report([name, "ca_file"], "ca_file is for an https:// url; \(url) is plain http")
            }
            search.username = string(t, [name, "username"])
            search.passwordFile = file(t, [name, "password_file"], secret: true)
            search.apiKeyFile = file(t, [name, "api_key_file"], secret: true)
            if (t["username"] == nil) != (t["password_file"] == nil) {
                report([name, t["username"] == nil ? "password_file" : "username"], "basic authentication needs both username and password_file")
            }
            if t["api_key_file"] != nil && t["username"] != nil {
                report([name, "api_key_file"], "give username and password_file, or api_key_file, not both")
            }
            return search
        }
    }
}
