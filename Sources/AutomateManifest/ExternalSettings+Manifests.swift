import Foundation

extension ExternalSettings {
    /// How long an external server's watcher may stay unhealthy at its start before anything is done:
    /// practically forever. The server is not the stack's to restart; its dependents wait in `waiting`
    /// and the watcher's health says why, until the server is fixed.
    static let watcherGrace: Duration = .seconds(10 * 365 * 24 * 3600)

    /// The service names of `set` that an external server stands in for, with the server's kind.
    public func standIns(in set: ManifestSet) -> [String: Kind] {
        var names: [String: Kind] = [:]
        for manifest in set.services {
            guard let kind = manifest.external else { continue }
            if isSet(kind) { names[manifest.name] = kind }
        }
        return names
    }

    /// `set` with the external servers in place: each service an external server stands in for becomes
    /// its watcher (``watcher(for:kind:secretsDirectory:)``) and each service that depends on it is pointed
    /// at the server (``pointing(_:at:secretsDirectory:)``).
    public func applied(to set: ManifestSet, secretsDirectory: String) -> ManifestSet {
        let standIns = standIns(in: set)
        guard !standIns.isEmpty else { return set }
        return set.replacing(set.services.map { applied(to: $0, standIns: standIns, secretsDirectory: secretsDirectory) })
    }

    /// One manifest of a set whose stand-ins are `standIns` (a manifest recorded in a backup, put back
    /// by a restore, is pointed at the external servers like the others).
    public func applied(to manifest: ServiceManifest, standIns: [String: Kind], secretsDirectory: String) -> ServiceManifest {
        if let kind = standIns[manifest.name] { return watcher(for: manifest, kind: kind, secretsDirectory: secretsDirectory) }
        var result = manifest
        for kind in Set(manifest.dependsOn.compactMap { standIns[$0] }).sorted(by: { $0.rawValue < $1.rawValue }) {
            result = pointing(result, at: kind, secretsDirectory: secretsDirectory)
        }
        return result
    }

    /// The watcher that takes the place of `manifest`: `automate-external watch <kind>` under the same
    /// name (so dependencies hold), health from `hooks/external/health-check` (reachable, TLS verified,
    /// version; a failure names what is wrong), never given up on.
    public func watcher(for manifest: ServiceManifest, kind: Kind, secretsDirectory: String) -> ServiceManifest {
        var w = ServiceManifest(
            name: manifest.name, description: "external \(kind.rawValue): \(address(of: kind)) (\(path))", kind: manifest.kind,
            command: ["${AUTOMATE_BIN_DIR}/automate-external", "watch", kind.rawValue], user: manifest.user,
            dataDir: manifest.dataDir,
            health: HealthCheckSpec(interval: .seconds(10), timeout: .seconds(30), grace: Self.watcherGrace),
            restart: RestartSpec(policy: .always, backoffBase: .seconds(1), backoffMax: .seconds(30)),
            stop: StopSpec(signalName: "SIGTERM", timeout: .seconds(10))!,
            // The manifest's own file: a backup records that text, and a restore puts the watcher back from it.
            hooks: HookSpec(), sourcePath: manifest.sourcePath)
        w.hooks.folder = "external"
        w.external = kind
        w.callers = manifest.callers
        // `automate psql` runs the stack's own client tools.
        if let bindir = manifest.config["bindir"] { w.config["bindir"] = bindir }
        w.environment = ["AUTOMATE_EXTERNAL_KIND": kind.rawValue]
        w = pointing(w, at: kind, secretsDirectory: secretsDirectory)
        return w
    }

    /// `host:port` or the URL.
    public func address(of kind: Kind) -> String {
        switch kind {
        case .postgresql: postgresql.map { "\($0.host):\($0.port)" } ?? ""
        case .search: search?.url ?? ""
        }
    }

    /// `manifest` connecting to the external server of `kind`: `[config]` `pg_host`, `pg_port`,
    /// `pg_user` (or `search_url`) set to it; libpq's variables (`PGSSLMODE`, `PGSSLROOTCERT`, `PGPASSFILE`,
    /// `PGSSLCERT`, `PGSSLKEY`, `PGCONNECT_TIMEOUT`) or the search client's (`AUTOMATE_SEARCH_CA_FILE`,
    /// `AUTOMATE_SEARCH_AUTHORIZATION_FILE`) in its environment, naming copies of the operator's files that
    /// only its user can read.
    public func pointing(_ manifest: ServiceManifest, at kind: Kind, secretsDirectory: String) -> ServiceManifest {
        var m = manifest
        func copy(_ source: String?, _ suffix: String, _ format: SecretFileCopy.Format) -> String? {
            guard let source else { return nil }
            let destination = secretsDirectory + "/\(manifest.name).\(suffix)"
            m.secretFiles.removeAll { $0.destination == destination }
            m.secretFiles.append(SecretFileCopy(source: source, destination: destination, format: format))
            return destination
        }
        switch kind {
        case .postgresql:
            guard let pg = postgresql else { return m }
            m.config["pg_host"] = .string(pg.host)
            m.config["pg_port"] = .integer(pg.port)
            m.config["pg_user"] = .string(pg.user)
            m.environment["PGSSLMODE"] = pg.sslMode
            m.environment["PGCONNECT_TIMEOUT"] = String(pg.connectTimeout)
            m.environment["PGSSLROOTCERT"] = copy(pg.caFile, "pg-ca.pem", .verbatim)
            m.environment["PGPASSFILE"] = copy(pg.passwordFile, "pgpass", .pgpass(user: pg.user))
            m.environment["PGSSLCERT"] = copy(pg.certFile, "pg-client.crt", .verbatim)
            m.environment["PGSSLKEY"] = copy(pg.keyFile, "pg-client.key", .verbatim)
        case .search:
            guard let search else { return m }
            m.config["search_url"] = .string(search.url)
            // The es-sidecar: an engine of its own to save to disk no longer (the cluster keeps its data).
            if m.config["external"] != nil { m.config["external"] = .boolean(true) }
            if m.config["save_dir"] != nil { m.config["save_dir"] = .string("") }
            m.environment["AUTOMATE_SEARCH_CA_FILE"] = copy(search.caFile, "search-ca.pem", .verbatim)
            if let user = search.username {
                m.environment["AUTOMATE_SEARCH_AUTHORIZATION_FILE"] = copy(search.passwordFile, "search-authorization", .basicAuthorization(user: user))
            } else {
                m.environment["AUTOMATE_SEARCH_AUTHORIZATION_FILE"] = copy(search.apiKeyFile, "search-authorization", .apiKeyAuthorization)
            }
        }
        return m
    }
}
