import AutomateManifest
import Testing

@Suite struct ExpansionTests {
    let expander = VariableExpander(
        variables: ["AUTOMATE_HOME": "/hab", "AUTOMATE_SERVICE_DATA": "/hab/data/pg"],
        config: ["port": .integer(5432), "bindir": .string("/usr/lib/postgresql/15/bin")])

    @Test func expandsVariablesConfigAndEscapes() throws {
        #expect(try expander.expand("${cfg.bindir}/postgres") == "/usr/lib/postgresql/15/bin/postgres")
        #expect(try expander.expand("-p${cfg.port}") == "-p5432")
        #expect(try expander.expand("${AUTOMATE_HOME}/x/${AUTOMATE_SERVICE_DATA}") == "/hab/x//hab/data/pg")
        #expect(try expander.expand("cost: $$5 and $${AUTOMATE_HOME}") == "cost: $5 and ${AUTOMATE_HOME}")
        #expect(try expander.expand("plain") == "plain")
        #expect(try expander.expand("") == "")
    }

    @Test func expansionErrors() {
        func message(_ s: String) -> String {
            do {
                _ = try expander.expandTyped(s)
                return "no error"
            } catch {
                return error.message
            }
        }
        #expect(message("${AUTOMATE_HOMR}") == "unknown variable ${AUTOMATE_HOMR} (did you mean ${AUTOMATE_HOME}?)")
        #expect(message("${PATH}") == "unknown variable ${PATH}; known: AUTOMATE_HOME, AUTOMATE_SERVICE_DATA, cfg.<key> for keys in [config]")
        #expect(message("${cfg.prot}") == #"unknown variable ${cfg.prot}: [config] has no key "prot" (did you mean ${cfg.port}?)"#)
        #expect(message("${AUTOMATE_HOME") == #"unterminated "${" in "${AUTOMATE_HOME""#)
        #expect(message("$HOME") == #"a "$" must start "${NAME}" or be doubled as "$$" in "$HOME""#)
        #expect(message("${}") == #"malformed "${}" in "${}""#)
        #expect(throws: VariableExpansionError.self) { try expander.expand("${NOPE}") }
    }

    @Test func references() throws {
        #expect(try VariableExpander.references(in: "${a}-${cfg.b}$$") == ["a", "cfg.b"])
    }

    @Test func unknownVariablesInManifestsAreReportedWithLines() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = [
              "/bin/svc",
              "--data=${AUTOMATE_SERVICE_DATA}",
              "--port=${cfg.prot}",
            ]
            working_directory = "${AUTOMATE_HOMEDIR}/x"

            [environment]
            HOME = "${HOME}"
            PRICE = "$5"

            [config]
            port = 1

            [backup]
            paths = ["${AUTOMATE_DATA_DIR}/ok", "${AUTOMATE_RUN_USR}"]
            """) == [
                #"services/svc.toml:6: service.command: unknown variable ${cfg.prot}: [config] has no key "prot" (did you mean ${cfg.port}?)"#,
                "services/svc.toml:8: service.working_directory: unknown variable ${AUTOMATE_HOMEDIR} (did you mean ${AUTOMATE_HOME}?)",
                "services/svc.toml:11: environment.HOME: unknown variable ${HOME}; known: AUTOMATE_BIN_DIR, AUTOMATE_DATA_DIR, AUTOMATE_HOME, AUTOMATE_HOOKS_DIR, AUTOMATE_LOG_DIR, AUTOMATE_RUN_DIR, AUTOMATE_RUN_USER, AUTOMATE_SERVICE, AUTOMATE_SERVICE_DATA, cfg.<key> for keys in [config]",
                #"services/svc.toml:12: environment.PRICE: a "$" must start "${NAME}" or be doubled as "$$" in "$5""#,
                "services/svc.toml:18: backup.paths: unknown variable ${AUTOMATE_RUN_USR} (did you mean ${AUTOMATE_RUN_USER}?)",
            ])
    }

    @Test func resolvedExpandsEverything() throws {
        let m = try manifest(name: "pg", """
            [service]
            name = "pg"
            command = ["${cfg.bindir}/postgres", "-p", "${cfg.port}"]
            working_directory = "${AUTOMATE_SERVICE_DATA}"
            [environment]
            PGDATA = "${AUTOMATE_SERVICE_DATA}"
            [config]
            port = 5432
            bindir = "/usr/lib/postgresql/15/bin"
            [backup]
            paths = ["${AUTOMATE_SERVICE_DATA}/conf"]
            """)
        let variables = m.builtinVariables(
            home: "/hab", runDir: "/hab/run", dataRoot: "/hab/data", logDir: "/hab/log", binDir: "/hab/bin",
            hooksDir: "/hab/hooks", runUser: "automate")
        #expect(variables["AUTOMATE_SERVICE_DATA"] == "/hab/data/pg")
        let r = try m.resolved(using: VariableExpander(variables: variables, config: m.config))
        #expect(r.command == ["/usr/lib/postgresql/15/bin/postgres", "-p", "5432"])
        #expect(r.workingDirectory == "/hab/data/pg")
        #expect(r.environment == ["PGDATA": "/hab/data/pg"])
        #expect(r.backup.paths == ["/hab/data/pg/conf"])
    }

    @Test func resolvedReportsEveryProblem() throws {
        let m = try manifest(name: "pg", """
            [service]
            name = "pg"
            command = ["${cfg.bindir}/postgres", "${AUTOMATE_HOME}"]
            [config]
            bindir = "relative/bin"
            """)
        do {
            _ = try m.resolved(using: VariableExpander(variables: [:], config: m.config))
            Issue.record("expected an error")
        } catch let error as ManifestErrors {
            #expect(error.description == "services/pg.toml: service.command[1]: unknown variable ${AUTOMATE_HOME}; known: , cfg.<key> for keys in [config]")
        }
        do {
            _ = try m.resolved(using: VariableExpander(variables: ["AUTOMATE_HOME": "/h"], config: m.config))
            Issue.record("expected an error")
        } catch let error as ManifestErrors {
            #expect(error.description == #"services/pg.toml: service.command[0]: the program "relative/bin/postgres" must be an absolute path or a bare name looked up in PATH"#)
        }
    }

    @Test func configStringsAreExpandedBeforeTheCommandSeesThem() throws {
        let m = try manifest(name: "pg", """
            [service]
            name = "pg"
            command = ["${cfg.bindir}/postgres"]
            [config]
            bindir = "${AUTOMATE_HOME}/bin"
            """)
        let r = try m.resolved(using: VariableExpander(variables: ["AUTOMATE_HOME": "/h"], config: m.config))
        #expect(r.config["bindir"] == .string("/h/bin"))
        #expect(r.command == ["/h/bin/postgres"])
    }
}
