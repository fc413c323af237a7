import AutomateManifest
import Testing

@Suite struct ManifestModelTests {
    static let postgres = """
        # PostgreSQL, run by the supervisor
        [service]
        name = "automate-postgresql"
        description = "PostgreSQL 15 server"
        command = ["${cfg.bindir}/postgres", "-D", "${AUTOMATE_SERVICE_DATA}", "-p", "${cfg.port}"]
        user = "automate"
        socket = "automate-postgresql.sock"
        data_dir = "postgresql"
        working_directory = "${AUTOMATE_SERVICE_DATA}"
        kind = "infrastructure"

        [health]
        hook = "ready"
        interval = "250ms"
        timeout = "3s"
        grace = "2m"

        [restart]
        policy = "always"
        backoff_base = "100ms"
        backoff_max = "1h"
        crash_loop_limit = 3
        crash_loop_window = "30s"
        reset_after = "90s"

        [stop]
        signal = "INT"
        timeout = "10s"

        [hooks]
        init_timeout = "5m"
        post_stop_timeout = "15s"

        [environment]
        LANG = "C.UTF-8"
        PGDATA = "${AUTOMATE_SERVICE_DATA}"

        [config]
        port = 10145
        bindir = "/usr/lib/postgresql/15/bin"
        fsync = true
        ratio = 0.5

        [backup]
        contract = true
        databases = ["notifications"]
        indices = ["compliance-reports"]
        paths = ["${AUTOMATE_SERVICE_DATA}/config"]
        gateway = true
        """

    @Test func fullManifestRoundTrips() throws {
        let m = try manifest(name: "automate-postgresql", Self.postgres)
        let expected = ServiceManifest(
            name: "automate-postgresql", description: "PostgreSQL 15 server", kind: .infrastructure,
            command: ["${cfg.bindir}/postgres", "-D", "${AUTOMATE_SERVICE_DATA}", "-p", "${cfg.port}"],
            user: "automate", dependsOn: [], socket: "automate-postgresql.sock", dataDir: "postgresql",
            workingDirectory: "${AUTOMATE_SERVICE_DATA}",
            health: HealthCheckSpec(hook: "ready", interval: .milliseconds(250), timeout: .seconds(3), grace: .seconds(120)),
            restart: RestartSpec(
                policy: .always, backoffBase: .milliseconds(100), backoffMax: .seconds(3600), crashLoopLimit: 3,
                crashLoopWindow: .seconds(30), resetAfter: .seconds(90)),
            stop: StopSpec(signalName: "SIGINT", timeout: .seconds(10))!,
            hooks: HookSpec(initTimeout: .seconds(300), postStopTimeout: .seconds(15)),
            environment: ["LANG": "C.UTF-8", "PGDATA": "${AUTOMATE_SERVICE_DATA}"],
            config: ["port": .integer(10145), "bindir": .string("/usr/lib/postgresql/15/bin"), "fsync": .boolean(true), "ratio": .double(0.5)],
            backup: BackupSpec(
                contract: true, databases: ["notifications"], indices: ["compliance-reports"],
                paths: ["${AUTOMATE_SERVICE_DATA}/config"], gateway: true),
            sourcePath: "services/automate-postgresql.toml")
        #expect(m == expected)
        #expect(m.stop.signal == 2)
        #expect(m.stop.signalName == "SIGINT")
        #expect(m.configEnvironment["AUTOMATE_CFG_PORT"] == "10145")
        #expect(m.configEnvironment["AUTOMATE_CFG_FSYNC"] == "true")
        #expect(m.configEnvironment["AUTOMATE_CFG_RATIO"] == "0.5")
    }

    @Test func minimalManifestGetsDefaults() throws {
        let m = try manifest(name: "svc", """
            [service]
            name = "svc"
            command = ["svc-server"]
            """)
        #expect(m.description == "")
        #expect(m.kind == .domain)
        #expect(m.user == nil)
        #expect(m.dependsOn == [])
        #expect(m.socket == nil)
        #expect(m.dataDir == "svc")
        #expect(m.workingDirectory == nil)
        #expect(m.health == HealthCheckSpec(hook: "health-check", interval: .seconds(5), timeout: .seconds(5), grace: .seconds(60)))
        #expect(m.restart == RestartSpec(
            policy: .onFailure, backoffBase: .milliseconds(200), backoffMax: .seconds(30), crashLoopLimit: 5,
            crashLoopWindow: .seconds(60), resetAfter: .seconds(60)))
        #expect(m.stop.signalName == "SIGTERM")
        #expect(m.stop.signal == 15)
        #expect(m.stop.timeout == .seconds(30))
        #expect(m.hooks == HookSpec(initTimeout: .seconds(120), postStopTimeout: .seconds(30)))
        #expect(m.environment.isEmpty)
        #expect(m.config.isEmpty)
        #expect(m.backup == BackupSpec())
        #expect(!m.backup.ownsData)
    }

    @Test func inlineTablesAndDottedKeysAreAccepted() throws {
        let m = try manifest(name: "svc", """
            service = { name = "svc", command = ["/bin/svc"] }
            health.interval = "1s"
            restart = { policy = "never" }
            """)
        #expect(m.health.interval == .seconds(1))
        #expect(m.restart.policy == .never)
    }

    @Test func durations() {
        #expect(ManifestDuration.parse("250ms") == .milliseconds(250))
        #expect(ManifestDuration.parse("5s") == .seconds(5))
        #expect(ManifestDuration.parse("2m") == .seconds(120))
        #expect(ManifestDuration.parse("1h") == .seconds(3600))
        #expect(ManifestDuration.parse("5") == nil)
        #expect(ManifestDuration.parse("1.5s") == nil)
        #expect(ManifestDuration.parse("-1s") == nil)
        #expect(ManifestDuration.parse("5 s") == nil)
        #expect(ManifestDuration.format(.seconds(120)) == "2m")
        #expect(ManifestDuration.format(.milliseconds(1500)) == "1500ms")
    }

    @Test func backoffDoublesUpToTheMaximum() {
        let r = RestartSpec()
        #expect(r.backoff(attempt: 1) == .milliseconds(200))
        #expect(r.backoff(attempt: 2) == .milliseconds(400))
        #expect(r.backoff(attempt: 4) == .milliseconds(1600))
        #expect(r.backoff(attempt: 100) == .seconds(30))
    }

    @Test func configValueDescriptions() {
        #expect(ConfigValue.string("x").description == "x")
        #expect(ConfigValue.integer(-3).description == "-3")
        #expect(ConfigValue.boolean(false).description == "false")
        #expect(ConfigValue.double(1.0).description == "1.0")
    }
}
