import AutomateManifest
import Testing

@Suite struct OverlayTests {
    func base() throws -> ServiceManifest {
        try manifest(name: "pg", minimal("pg") + """
            [config]
            port = 5432
            bindir = "/usr/lib/postgresql/15/bin"
            fsync = true
            ratio = 0.5
            """)
    }

    @Test func overlayReplacesValues() throws {
        let m = try base().applyingConfigOverlay(path: "/hab/config/pg.toml", contents: """
            # user overrides
            [config]
            port = 6543
            ratio = 2
            fsync = false
            """)
        #expect(m.config["port"] == .integer(6543))
        #expect(m.config["ratio"] == .double(2))
        #expect(m.config["fsync"] == .boolean(false))
        #expect(m.config["bindir"] == .string("/usr/lib/postgresql/15/bin"))
        #expect(try base().applyingConfigOverlay(path: "x.toml", contents: "") == base())
    }

    @Test func overlayErrorsNameFileLineAndKey() throws {
        let base = try base()
        do {
            _ = try base.applyingConfigOverlay(path: "/hab/config/pg.toml", contents: """
                [config]
                prot = 1
                port = "6543"
                bindir = ["a"]

                [service]
                name = "x"
                """)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == """
                /hab/config/pg.toml:2: config.prot: unknown config key "prot": the manifest of pg (services/pg.toml) has no such key (did you mean "port"?)
                /hab/config/pg.toml:3: config.port: expected integer (as in the manifest), found string
                /hab/config/pg.toml:4: config.bindir: expected string (as in the manifest), found array
                /hab/config/pg.toml:6: service: unknown table [service]: a config overlay may only hold a [config] table
                """)
        }
    }

    @Test func overlaySyntaxError() throws {
        let base = try base()
        do {
            _ = try base.applyingConfigOverlay(path: "o.toml", contents: "[config]\nport = = 1\n")
            Issue.record("expected an error")
        } catch {
            #expect(error.diagnostics.count == 1)
            #expect(error.diagnostics[0].line == 2)
            #expect(error.description.hasPrefix("o.toml:2: TOML syntax error at column "))
        }
    }
}
