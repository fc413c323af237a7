import AutomateManifest
import Foundation
import Testing

@Suite struct ExternalSettingsTests {
    /// A folder with a 0600 password file, a 0644 one and a CA file.
    static func files() throws -> String {
        let folder = NSTemporaryDirectory() + "external-settings-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (name, mode) in [("password", 0o600), ("open-password", 0o644), ("ca.pem", 0o644)] {
            try "secret\n".write(toFile: folder + "/" + name, atomically: false, encoding: .utf8)
            chmod(folder + "/" + name, mode_t(mode))
        }
        return folder
    }

    @Test func parsesBothTablesWithDefaults() throws {
        let dir = try Self.files()
        let settings = try ExternalSettings.parse(path: "/h/config/external.toml", contents: """
            [postgresql]
            host = "db.internal"
            user = "automate"
            password_file = "\(dir)/password"
            ca_file = "\(dir)/ca.pem"

            [search]
            url = "https://search.internal:9200/"
            ca_file = "\(dir)/ca.pem"
            username = "automate"
            password_file = "\(dir)/password"
            """)
        let pg = try #require(settings.postgresql)
        #expect(pg.host == "db.internal" && pg.port == 5432 && pg.sslMode == "verify-full" && pg.caFile == dir + "/ca.pem")
        let search = try #require(settings.search)
        #expect(search.url == "https://search.internal:9200" && search.username == "automate")
    }

    @Test func errorsNameFileLineAndKey() throws {
        let dir = try Self.files()
        let text = """
            [postgresql]
            host = "db.internal"
            port = 70000
            user = "automate"
            password_file = "\(dir)/open-password"
            sslmode = "verify-full"
            sslrootcert = "x"

            [search]
            url = "ftp://search"
            [elastic]
            """
        #expect {
            try ExternalSettings.parse(path: "/h/config/external.toml", contents: text)
        } throws: { error in
            let text = "\(error)"
            return text.contains("/h/config/external.toml:3: postgresql.port: expected an integer from 1 to 65535, found 70000")
                && text.contains("/h/config/external.toml:5: postgresql.password_file: \(dir)/open-password may be read by others (mode 644): chmod 600")
                && text.contains("postgresql.sslmode: sslmode verify-full checks the server's certificate: give ca_file")
                && text.contains("/h/config/external.toml:7: postgresql.sslrootcert: unknown key \"sslrootcert\" in [postgresql]")
                && text.contains("/h/config/external.toml:10: search.url: \"ftp://search\" is not an http:// or https:// URL")
                && text.contains("/h/config/external.toml:11: elastic: unknown table [elastic]")
        }
    }

    @Test func serviceStandsInAndDependentsArePointed() throws {
        let dir = try Self.files()
        let settings = try ExternalSettings.parse(path: "/h/config/external.toml", contents: """
            [postgresql]
            host = "db.internal"
            port = 6432
            user = "automate"
            password_file = "\(dir)/password"
            ca_file = "\(dir)/ca.pem"
            """)
        let set = try ManifestSet.parse(files: [
            (path: "services/pg.toml", contents: minimal("pg") + "\nexternal = \"postgresql\"\n[backup]\ncluster = true\n[config]\nport = 10145\nbindir = \"/usr/lib/postgresql/15/bin\"\n"),
            (path: "services/app.toml", contents: minimal("app", dependsOn: ["pg"]) + "\n[config]\npg_port = 10145\n"),
            (path: "services/search.toml", contents: minimal("search") + "\nexternal = \"search\"\n"),
            (path: "services/other.toml", contents: minimal("other", dependsOn: ["search"])),
        ])
        #expect(settings.standIns(in: set) == ["pg": .postgresql])
        let applied = settings.applied(to: set, secretsDirectory: "/h/secrets")

        let watcher = try #require(applied.manifest(named: "pg"))
        #expect(watcher.command == ["${AUTOMATE_BIN_DIR}/automate-external", "watch", "postgresql"])
        #expect(watcher.hooks.folder == "external" && watcher.external == .postgresql)
        #expect(watcher.backup.cluster == false, "no base backups of a server the stack does not run")
        #expect(watcher.sourcePath == "services/pg.toml")
        #expect(watcher.config["bindir"] == .string("/usr/lib/postgresql/15/bin"))

        let app = try #require(applied.manifest(named: "app"))
        #expect(app.config["pg_host"] == .string("db.internal") && app.config["pg_port"] == .integer(6432) && app.config["pg_user"] == .string("automate"))
        #expect(app.environment["PGSSLMODE"] == "verify-full" && app.environment["PGSSLROOTCERT"] == "/h/secrets/app.pg-ca.pem"
                && app.environment["PGPASSFILE"] == "/h/secrets/app.pgpass")
        #expect(app.secretFiles == [
            SecretFileCopy(source: dir + "/ca.pem", destination: "/h/secrets/app.pg-ca.pem", format: .verbatim),
            SecretFileCopy(source: dir + "/password", destination: "/h/secrets/app.pgpass", format: .pgpass(user: "automate")),
        ])
        // Search is not external here: its service and dependents are untouched.
        #expect(applied.manifest(named: "search") == set.manifest(named: "search"))
        #expect(applied.manifest(named: "other") == set.manifest(named: "other"))
    }

    @Test func unknownStandInKindIsRefused() throws {
        #expect {
            try ManifestSet.parse(files: [(path: "services/pg.toml", contents: minimal("pg") + "\nexternal = \"mysql\"\n")])
        } throws: { "\($0)".contains("service.external: \"mysql\" is not one of postgresql, search") }
    }
}
