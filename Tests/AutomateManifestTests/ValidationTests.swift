import AutomateManifest
import Testing

@Suite struct ValidationTests {
    @Test func tomlSyntaxErrorHasLineAndColumn() {
        let d = diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/true"
            user = "x"
            """)
        #expect(d == ["services/svc.toml:4: TOML syntax error at column 1: Error while parsing array: expected comma or closing ']', saw 'u'"])
        #expect(diagnostics(name: "svc", "[service]\nname = \"svc\"\nname = \"x\"\n") == [
            "services/svc.toml:3: TOML syntax error at column 8: Error while parsing key-value pair: cannot redefine existing string 'name'"
        ])
    }

    @Test func syntaxErrorsInSeveralFilesAreAllReported() {
        #expect(diagnostics([("a.toml", "[service\n"), ("b.toml", minimal("b", dependsOn: ["a"])), ("c.toml", "x = \n")]).count == 2)
    }

    @Test func missingRequiredFields() {
        #expect(diagnostics(name: "svc", """
            # comment

            [service]
            description = "no name, no command"
            """) == [
                #"services/svc.toml:3: service.name: missing required key "name""#,
                #"services/svc.toml:3: service.command: missing required key "command""#,
            ])
        #expect(diagnostics(name: "svc", "[health]\n") == ["services/svc.toml: service: missing required table [service]"])
    }

    @Test func wrongTypes() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = 7
            """) == ["services/svc.toml:3: service.command: expected an array of strings, found integer"])
        // An element of a multi-line array is reported at its own line.
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = [
              "/bin/svc",
              "--port",
              8080,
            ]
            """) == ["services/svc.toml:6: service.command: expected an array of strings, found integer at index 2"])
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/svc"]
            [restart]
            crash_loop_limit = "5"
            [backup]
            gateway = "yes"
            [environment]
            PORT = 5
            """) == [
                "services/svc.toml:5: restart.crash_loop_limit: expected an integer, found string",
                "services/svc.toml:7: backup.gateway: expected a boolean, found string",
                "services/svc.toml:9: environment.PORT: expected a string, found integer",
            ])
        #expect(diagnostics(name: "svc", """
            service = "svc"
            """) == ["services/svc.toml:1: service: expected a table, found string"])
    }

    @Test func commandChecks() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = []
            """) == ["services/svc.toml:3: service.command: must not be empty: give the program and its arguments"])
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["bin/svc"]
            """) == [#"services/svc.toml:3: service.command: the program "bin/svc" must be an absolute path or a bare name looked up in PATH"#])
    }

    @Test func sharedWithChecks() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/svc"]
            shared_with = ["other", "svc", "other"]
            """) == [
                #"services/svc.toml:4: service.shared_with: "svc" is this service itself"#,
                #"services/svc.toml:4: service.shared_with: "other" is listed twice"#,
            ])
    }

    @Test func defaultUserNames() {
        func user(_ name: String) -> String { ServiceManifest(name: name, command: ["/bin/x"]).defaultUserName }
        #expect(user("pg-sidecar-service") == "automate-pg-sidecar")
        #expect(user("automate-postgresql") == "automate-postgresql")
        #expect(user("backup-gateway") == "automate-backup-gateway")
        #expect(user("service") == "automate-service")
        #expect(user(String(repeating: "a", count: 40)).count == 32)
        #expect(ServiceManifest(name: "x", command: ["/bin/x"], user: "postgres").runUserName == "postgres")
    }

    @Test func unknownKeysAndTables() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            comand = ["/bin/svc"]
            command = ["/bin/svc"]
            frobnicate = 1

            [helth]
            interval = "1s"

            [restart]
            backof_base = "1s"
            """) == [
                #"services/svc.toml:3: service.comand: unknown key "comand" in [service] (did you mean "command"?)"#,
                #"services/svc.toml:5: service.frobnicate: unknown key "frobnicate" in [service]; known keys: name, description, command, user, depends_on, socket, data_dir, working_directory, kind, shared_with, callers, external"#,
                "services/svc.toml:7: helth: unknown table [helth] (did you mean [health]?)",
                #"services/svc.toml:11: restart.backof_base: unknown key "backof_base" in [restart] (did you mean "backoff_base"?)"#,
            ])
    }

    @Test func unknownKeysInDottedAndInlineForms() {
        #expect(diagnostics(name: "svc", """
            health.intervall = "1s"

            stop = { signal = "TERM", timeot = "1s" }
            [service]
            name = "svc"
            command = ["/bin/svc"]
            """) == [
                #"services/svc.toml:1: health.intervall: unknown key "intervall" in [health] (did you mean "interval"?)"#,
                #"services/svc.toml:3: stop.timeot: unknown key "timeot" in [stop] (did you mean "timeout"?)"#,
            ])
        // A dotted key after [service] belongs to [service].
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/svc"]
            health.interval = "1s"
            """) == [
                #"services/svc.toml:4: service.health: unknown key "health" in [service] (the [health] table needs its own [health] header)"#,
            ])
    }

    @Test func enumsDurationsAndSignals() {
        #expect(diagnostics(name: "teams-service", """
            [service]
            name = "teams-service"
            command = ["/bin/svc"]
            kind = "infra"

            [restart]
            policy = "sometimes"
            backoff_base = "5 sec"
            backoff_max = "0s"
            crash_loop_window = 60

            [stop]
            signal = "SIGSTOP"
            """) == [
                "services/teams-service.toml:4: service.kind: \"infra\" is not one of infrastructure, gateway, sidecar, orchestrator, domain",
                "services/teams-service.toml:7: restart.policy: \"sometimes\" is not one of always, on-failure, never",
                #"services/teams-service.toml:8: restart.backoff_base: "5 sec" is not a duration; write an integer and a unit: "250ms", "5s", "2m", "1h""#,
                #"services/teams-service.toml:9: restart.backoff_max: "0s" must be greater than 0"#,
                #"services/teams-service.toml:10: restart.crash_loop_window: expected a duration string such as "5s", found integer"#,
                "services/teams-service.toml:13: stop.signal: \"SIGSTOP\" is not a supported signal; use one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGKILL",
            ])
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/svc"]
            [restart]
            policy = "on_failure"
            backoff_base = "2s"
            backoff_max = "1s"
            """) == [
                #"services/svc.toml:5: restart.policy: "on_failure" is not one of always, on-failure, never (did you mean "on-failure"?)"#,
                #"services/svc.toml:7: restart.backoff_max: "1s" must be at least backoff_base ("2s")"#,
            ])
    }

    @Test func signalsAcceptBothSpellings() throws {
        for (text, number) in [("SIGTERM", 15), ("TERM", 15), ("SIGKILL", 9), ("HUP", 1), ("SIGUSR1", 10), ("QUIT", 3)] {
            let m = try manifest(name: "svc", minimal("svc") + "[stop]\nsignal = \"\(text)\"\n")
            #expect(m.stop.signal == Int32(number))
        }
    }

    @Test func nameMustMatchFileAndBeValid() {
        #expect(diagnostics(name: "teams-service", """
            [service]
            name = "team-service"
            command = ["/bin/svc"]
            """) == [#"services/teams-service.toml:2: service.name: "team-service" does not match the file name; it must be "teams-service" (the file name without .toml)"#])
        #expect(diagnostics(name: "Svc", """
            [service]
            name = "Svc"
            command = ["/bin/svc"]
            """) == [#"services/Svc.toml:2: service.name: "Svc" is not a valid service name (1 to 63 of a-z, 0-9, -)"#])
    }

    @Test func duplicateNamesAcrossFolders() {
        let d: [String]
        do {
            _ = try ManifestSet.parse(files: [
                (path: "a/svc.toml", contents: minimal("svc")),
                (path: "b/svc.toml", contents: "\n" + minimal("svc")),
            ])
            d = []
        } catch {
            d = error.diagnostics.map(\.description)
        }
        #expect(d == [#"b/svc.toml:3: service.name: duplicate service name "svc" (also declared in a/svc.toml)"#])
    }

    @Test func pathsAndFileNames() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/svc"]
            socket = "run/svc.sock"
            data_dir = ".."
            working_directory = "relative"
            user = "Bad User"
            [health]
            hook = "../x"
            [backup]
            paths = [
              "/ok",
              "data/config",
            ]
            """) == [
                #"services/svc.toml:4: service.socket: "run/svc.sock" must be a file name inside the run dir (no "/")"#,
                #"services/svc.toml:5: service.data_dir: ".." must be a folder name under <home>/data (no "/", not "." or "..")"#,
                #"services/svc.toml:6: service.working_directory: "relative" must be an absolute path"#,
                #"services/svc.toml:7: service.user: "Bad User" is not a valid user name"#,
                #"services/svc.toml:9: health.hook: "../x" must be a file name in hooks/<service>/ (no "/")"#,
                #"services/svc.toml:13: backup.paths: "data/config" must be an absolute path"#,
            ])
    }

    @Test func configValuesAndKeys() {
        #expect(diagnostics(name: "svc", """
            [service]
            name = "svc"
            command = ["/bin/svc"]
            [config]
            port = 1
            when = 1979-05-27
            nested = { a = 1 }
            "bad-key" = "x"
            """) == [
                #"services/svc.toml:6: config.when: expected a string, integer, boolean or float, found date"#,
                #"services/svc.toml:7: config.nested: expected a string, integer, boolean or float, found table"#,
                #"services/svc.toml:8: config.bad-key: "bad-key" is not a valid config key: it becomes AUTOMATE_CFG_<KEY>, so use letters, digits and "_""#,
            ])
    }

    @Test func environmentNames() {
        #expect(diagnostics(name: "svc", minimal("svc") + """
            [environment]
            "MY-VAR" = "x"
            AUTOMATE_HOME = "/elsewhere"
            AUTOMATE_CFG_PORT = "1"
            OK_1 = "fine"
            """) == [
                #"services/svc.toml:6: environment.MY-VAR: "MY-VAR" is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"#,
                #"services/svc.toml:7: environment.AUTOMATE_HOME: "AUTOMATE_HOME" is set by the supervisor and cannot be overridden here"#,
                #"services/svc.toml:8: environment.AUTOMATE_CFG_PORT: "AUTOMATE_CFG_PORT" is set by the supervisor and cannot be overridden here"#,
            ])
    }

    @Test func allErrorsAcrossFilesAreCollectedAndSorted() {
        let d = diagnostics([
            ("b.toml", minimal("b") + "[restart]\npolicy = \"x\"\n"),
            ("a.toml", "[service]\nname = \"a\"\ncommand = 1\n"),
        ])
        #expect(d == [
            "services/a.toml:3: service.command: expected an array of strings, found integer",
            #"services/b.toml:6: restart.policy: "x" is not one of always, on-failure, never"#,
        ])
    }
}
