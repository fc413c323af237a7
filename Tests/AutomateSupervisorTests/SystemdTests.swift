import AutomateSupervisor
import Foundation
import Testing

/// systemd integration: sd_notify sequence, watchdogs, reload, generated units, journald.
@Suite("systemd", .serialized)
struct SystemdTests {
    /// Starts automate-supervisor in the foreground with `environment` added.
    private func startSupervisor(_ stack: TestStack, environment extra: [String: String], arguments: [String] = []) throws -> ChildProcess {
        var environment = ProcessInfo.processInfo.environment
        environment.merge(extra) { $1 }
        environment.removeValue(forKey: "WATCHDOG_PID")
        let log = open(stack.root + "/supervisor.out", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        defer { close(log) }
        var options = ChildProcess.Options(
            executable: TestStack.binDirectory + "/automate-supervisor",
            arguments: ["--home", stack.home.path, "--services", stack.servicesDirectory, "--hooks", stack.hooksDirectory,
                        "--bin-dir", TestStack.binDirectory, "--foreground"] + arguments,
            environment: environment)
        options.standardOutput = log
        options.standardError = log
        options.deathSignal = SIGKILL
        return try ChildProcess.spawn(options)
    }

    @Test("sd_notify: STATUS updates, READY=1 only after the last service is healthy, watchdog pings, STOPPING=1 on SIGTERM")
    func notifySequence() async throws {
        let stack = try TestStack(name: "notify")
        defer { Task { await stack.tearDown() } }
        let marker = stack.root + "/slow-ready"
        try stack.writeManifest("fast", "[service]\nname = \"fast\"\ncommand = [\"/bin/sleep\", \"1000\"]\n")
        try stack.writeManifest("slow", """
            [service]
            name = "slow"
            command = ["/bin/sleep", "1000"]
            [health]
            interval = "50ms"
            grace = "60s"
            [config]
            marker = "\(marker)"
            """)
        try stack.writeHook("slow", "health-check", "#!/bin/sh\n[ -e \"$AUTOMATE_CFG_MARKER\" ] && exit 0\nexit 2\n")
        let listener = try DatagramListener(path: stack.root + "/notify.sock")
        defer { listener.close() }
        let supervisor = try startSupervisor(stack, environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000"])

        _ = try await listener.waitFor(within: .seconds(30)) { $0.contains("STATUS=1/2 services healthy") }
        // Not ready while `slow` is not healthy.
        try await Task.sleep(for: .milliseconds(300))
        #expect(!listener.messages.contains { $0.text.contains("READY=1") }, "READY=1 before every service was healthy")
        try "".write(toFile: marker, atomically: true, encoding: .utf8)
        let ready: String
        do {
            ready = try await listener.waitFor(within: .seconds(30)) { $0.contains("READY=1") }
        } catch {
            // Say why `slow` did not become healthy: its log (health lines) and the supervisor's output.
            let slowLog = (try? String(contentsOfFile: stack.home.logPath(service: "slow"), encoding: .utf8)) ?? "(no log)"
            let out = (try? String(contentsOfFile: stack.root + "/supervisor.out", encoding: .utf8)) ?? "(no output)"
            let marked = FileManager.default.fileExists(atPath: marker)
            let status = (try? await stack.status().first { $0.name == "slow" }).map { "\($0)" } ?? "(no status)"
            throw TestFailure("""
                \(error)
                marker exists: \(marked)
                slow's status: \(status)
                slow's log:
                \(slowLog.suffix(3000))
                supervisor:
                \(out.suffix(3000))
                """)
        }
        #expect(ready.contains("STATUS=2/2 services healthy"))
        #expect(ready.contains("MAINPID=\(supervisor.pid)"))

        // Watchdog: WATCHDOG_USEC=400ms → a ping every ~200 ms.
        let windowStart = ContinuousClock.now
        try await Task.sleep(for: .seconds(1))
        let pings = listener.messages.filter { $0.text == "WATCHDOG=1" && $0.at >= windowStart && $0.at <= windowStart + .seconds(1) }
        #expect((3...7).contains(pings.count), "expected about 5 pings in 1 s, got \(pings.count)")

        kill(supervisor.pid, SIGTERM)
        _ = try await listener.waitFor(within: .seconds(10)) { $0.contains("STOPPING=1") }
        #expect(await supervisor.waitForExit(timeout: .seconds(30)) == .exited(0))
        let texts = listener.messages.map(\.text)
        let readyIndex = try #require(texts.firstIndex { $0.contains("READY=1") })
        let statusIndex = try #require(texts.firstIndex { $0.contains("STATUS=1/2 services healthy") })
        let stoppingIndex = try #require(texts.firstIndex { $0.contains("STOPPING=1") })
        #expect(statusIndex < readyIndex && readyIndex < stoppingIndex)
    }

    @Test("a service that stops pinging its watchdog is restarted")
    func serviceWatchdog() async throws {
        let stack = try TestStack(name: "watchdog")
        defer { Task { await stack.tearDown() } }
        try stack.writeManifest("pinger", """
            [service]
            name = "pinger"
            command = ["python3", "-c", "import os, socket, time\\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\\nfor _ in range(6):\\n    s.sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET'])\\n    time.sleep(0.1)\\ntime.sleep(1000)\\n"]
            [health]
            watchdog = "500ms"
            grace = "2s"
            [restart]
            policy = "always"
            backoff_base = "10ms"
            backoff_max = "50ms"
            crash_loop_limit = 10
            """)
        let start = try await stack.automate(["start", "--timeout", "30"])
        try #require(start.succeeded, "\(stack.failure(start))")
        let first = try #require(try await stack.status().first)
        let restarted = try await stack.waitFor("pinger", within: .seconds(20)) { $0.restarts >= 1 && $0.state == "running" && $0.pid != first.pid }
        #expect(restarted.pid > 0)
        let log = try String(contentsOfFile: stack.home.logPath(service: "pinger"), encoding: .utf8)
        #expect(log.contains("watchdog: no WATCHDOG=1 for 0.5 seconds"))
    }

    @Test("reload restarts only the changed service, starts added ones; a broken manifest changes nothing")
    func reload() async throws {
        let stack = try TestStack(name: "reload")
        defer { Task { await stack.tearDown() } }
        for name in ["alpha", "beta"] {
            try stack.writeManifest(name, "[service]\nname = \"\(name)\"\ncommand = [\"/bin/sleep\", \"1000\"]\n")
        }
        let start = try await stack.automate(["start", "--timeout", "30"])
        try #require(start.succeeded, "\(stack.failure(start))")
        let before = Dictionary(uniqueKeysWithValues: try await stack.status().map { ($0.name, $0.pid) })

        try stack.writeManifest("alpha", "[service]\nname = \"alpha\"\ncommand = [\"/bin/sleep\", \"1001\"]\n")
        try stack.writeManifest("gamma", "[service]\nname = \"gamma\"\ncommand = [\"/bin/sleep\", \"1000\"]\n")
        let reload = try await stack.automate(["reload"])
        #expect(reload.succeeded, "\(reload.output)\(reload.error)")
        #expect(reload.output.contains("Restarted: alpha"))
        #expect(reload.output.contains("Started: gamma"))
        let alpha = try await stack.waitFor("alpha") { $0.state == "running" && $0.pid > 0 }
        _ = try await stack.waitFor("gamma") { $0.state == "running" && $0.pid > 0 }
        #expect(alpha.pid != before["alpha"])
        let beta = try #require(try await stack.status().first { $0.name == "beta" })
        #expect(beta.pid == before["beta"], "beta's manifest did not change: it must keep its pid")

        try stack.writeManifest("beta", "[service]\nname = \"beta\"\ncommand = \"not an array\"\n")
        let broken = try await stack.automate(["reload"])
        #expect(broken.status == AutomateSupervisor.ExitStatus.exited(2))
        #expect(broken.error.contains("beta.toml:3: service.command"), "\(broken.error)")
        let after = try await stack.status()
        #expect(after.first { $0.name == "beta" }?.pid == beta.pid)
        #expect(after.first { $0.name == "alpha" }?.pid == alpha.pid)
    }

    @Test("generated units pass systemd-analyze verify with empty stderr (system and --user)")
    func unitsVerify() async throws {
        let stack = try TestStack(name: "units")
        defer { Task { await stack.tearDown() } }
        try stack.useRepositoryService("automate-postgresql")
        try stack.useRepositoryService("automate-search")
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is missing: run scripts/install.sh --deps")
        for user in [false, true] {
            let directory = stack.root + (user ? "/user-units" : "/system-units")
            let install = try await stack.automate(
                ["systemd", "install", "--unit-directory", directory, "--backup-schedule", "*-*-* 02:00:00"] + (user ? ["--user"] : []))
            #expect(install.succeeded, "\(install.error)")
            let unit = try String(contentsOfFile: directory + "/automate.service", encoding: .utf8)
            #expect(unit.contains("Type=notify"))
            #expect(unit.contains("TimeoutStopSec=180s"), "stop + post-stop: 60+30 (postgresql) + 30+30 (search), + 30")
            var environment = ProcessInfo.processInfo.environment
            let runtime = stack.root + "/xdg-runtime"
            try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
            chmod(runtime, 0o700)
            environment["XDG_RUNTIME_DIR"] = runtime
            let names = ["automate.service", "automate-backup.service", "automate-backup.timer"].map { directory + "/" + $0 }
            let verify = try await CommandResult.run(analyze, (user ? ["--user"] : []) + ["verify"] + names, environment: environment)
            #expect(verify.succeeded, "\(verify.error)")
            #expect(verify.error.isEmpty, "systemd-analyze\(user ? " --user" : "") verify: \(verify.error)")
        }
    }

    @Test("system units score 5.0 or less in systemd-analyze security --offline=true")
    func unitsSecurity() async throws {
        let stack = try TestStack(name: "units-security")
        defer { Task { await stack.tearDown() } }
        try stack.useRepositoryService("automate-postgresql")
        let analyze = "/usr/bin/systemd-analyze"
        try #require(FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is missing: run scripts/install.sh --deps")
        let directory = stack.root + "/system-units"
        let install = try await stack.automate(["systemd", "install", "--unit-directory", directory, "--backup-schedule", "daily"])
        try #require(install.succeeded, "\(install.error)")
        for name in ["automate.service", "automate-backup.service"] {
            // --offline=true reads the unit file named by its path: no running systemd needed.
            let security = try await CommandResult.run(
                analyze, ["security", "--offline=true", directory + "/" + name], environment: ProcessInfo.processInfo.environment)
            #expect(security.succeeded, "\(security.error)")
            // "→ Overall exposure level for automate.service: 3.0 OK 🙂"
            let line = try #require(security.output.split(separator: "\n").first { $0.contains("Overall exposure level for \(name): ") },
                                    "no overall exposure line for \(name): \(security.output)\(security.error)")
            let exposure = try #require(line.components(separatedBy: ": ").last?.split(separator: " ").first.flatMap { Double($0) },
                                        "unreadable exposure: \(line)")
            print("systemd-analyze security --offline=true \(name): \(exposure)")
            #expect(exposure <= 5.0, "\(name): exposure \(exposure) > 5.0\n\(security.output)")
        }
    }

    @Test("journald: each service's lines go out with its identifier and priority")
    func journal() async throws {
        let stack = try TestStack(name: "journal")
        defer { Task { await stack.tearDown() } }
        try stack.writeManifest("echoer", """
            [service]
            name = "echoer"
            command = ["/bin/sh", "-c", "echo hello from echoer; echo trouble in echoer >&2; exec sleep 1000"]
            """)
        // journald's socket path is fixed; run the supervisor in a mount namespace of its own where a
        // socket this test binds stands at /run/systemd/journal/socket, and read the native-protocol
        // datagrams libsystemd sends.
        // As root a private mount namespace; as a user, a user namespace too (`unshare -r`).
        let unshareFlags = geteuid() == 0 ? ["-m"] : ["-r", "-m"]
        let journalDirectory = stack.root + "/journal"
        try FileManager.default.createDirectory(atPath: journalDirectory, withIntermediateDirectories: true)
        let listener = try DatagramListener(path: journalDirectory + "/socket")
        defer { listener.close() }
        let script = """
            set -e
            mount -t tmpfs tmpfs /run
            mkdir -p /run/systemd/journal
            mount --bind "\(journalDirectory)" /run/systemd/journal
            exec "\(TestStack.binDirectory)/automate-supervisor" --home "\(stack.home.path)" --services "\(stack.servicesDirectory)" \
              --hooks "\(stack.hooksDirectory)" --bin-dir "\(TestStack.binDirectory)" --log-target journal
            """
        var options = ChildProcess.Options(executable: "/usr/bin/unshare", arguments: unshareFlags + ["--propagation", "private", "/bin/sh", "-c", script],
                                           environment: ProcessInfo.processInfo.environment)
        let out = open(stack.root + "/supervisor.out", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        options.standardOutput = out
        options.standardError = out
        let supervisor = try ChildProcess.spawn(options)
        close(out)
        let info = try await listener.waitFor(within: .seconds(20)) { $0.contains("MESSAGE=hello from echoer") }
        #expect(info.contains("SYSLOG_IDENTIFIER=echoer"))
        #expect(info.contains("PRIORITY=6"))
        let warning = try await listener.waitFor(within: .seconds(20)) { $0.contains("MESSAGE=trouble in echoer") }
        #expect(warning.contains("PRIORITY=4"))
        #expect(warning.contains("SYSLOG_IDENTIFIER=echoer"))
        let own = try await listener.waitFor(within: .seconds(20)) { $0.contains("SYSLOG_IDENTIFIER=automate-supervisor") }
        #expect(own.contains("MESSAGE="))
        #expect(!FileManager.default.fileExists(atPath: stack.home.logPath(service: "echoer")), "journal mode writes no log files")
        print("journald test: asserted the native-protocol datagrams on \(listener.path) (bound at /run/systemd/journal/socket in a private mount namespace)")
        kill(supervisor.pid, SIGTERM)
        #expect(await supervisor.waitForExit(timeout: .seconds(30)) != nil)
    }
}
