import AutomateSupervisor
import Foundation
import Testing

/// Supervisor behaviour with small scripted services (real processes, real hooks).
@Suite("Supervisor behaviour", .serialized)
struct SupervisorBehaviourTests {
    @Test("a service that always exits ends failed after the crash-loop limit")
    func crashLoopFails() async throws {
        let stack = try TestStack(name: "crashloop")
        defer { Task { await stack.tearDown() } }
        try stack.writeManifest("flaky", """
            [service]
            name = "flaky"
            command = ["/bin/sh", "-c", "echo about to fail; exit 3"]
            [restart]
            policy = "always"
            backoff_base = "10ms"
            backoff_max = "50ms"
            crash_loop_limit = 3
            crash_loop_window = "30s"
            """)
        let start = try await stack.automate(["start", "--timeout", "30"])
        #expect(start.status == AutomateSupervisor.ExitStatus.exited(1))
        #expect(start.error.contains("flaky failed: crash loop"))
        let status = try #require(try await stack.status().first)
        #expect(status.state == "failed")
        #expect(status.restarts == 3)
        #expect(status.lastExit == "exited with code 3")
        let log = try String(contentsOfFile: stack.home.logPath(service: "flaky"), encoding: .utf8)
        #expect(log.components(separatedBy: "[stdout] about to fail").count - 1 == 4)

        // An operator's restart brings it back (and it fails again, counted).
        let restart = try await stack.automate(["restart", "flaky"])
        #expect(restart.succeeded)
    }

    @Test("health-check exit codes map to health and state")
    func healthCodes() async throws {
        let stack = try TestStack(name: "health")
        defer { Task { await stack.tearDown() } }
        let codeFile = stack.root + "/health-code"
        try "0".write(toFile: codeFile, atomically: true, encoding: .utf8)
        try stack.writeManifest("checked", """
            [service]
            name = "checked"
            command = ["/bin/sleep", "1000"]
            [health]
            interval = "100ms"
            timeout = "2s"
            grace = "20s"
            [config]
            code_file = "\(codeFile)"
            """)
        try stack.writeHook("checked", "health-check", """
            #!/bin/sh
            code=$(cat "$AUTOMATE_CFG_CODE_FILE")
            echo "reporting $code"
            exit $code
            """)
        let start = try await stack.automate(["start", "--timeout", "30"])
        try #require(start.succeeded, "\(stack.failure(start))")
        let expectations: [(String, String, String)] = [
            ("1", "warning", "running"), ("2", "critical", "unhealthy"), ("3", "unknown", "unhealthy"),
            ("0", "ok", "running"), ("7", "unknown", "unhealthy"),
        ]
        for (code, health, state) in expectations {
            try code.write(toFile: codeFile, atomically: true, encoding: .utf8)
            let status = try await stack.waitFor("checked", within: .seconds(20)) {
                $0.health == health && $0.state == state && $0.healthMessage == "reporting \(code)"
            }
            #expect(status.pid > 0)
        }
    }

    @Test("a hook that hangs is killed at its timeout, with what it started")
    func hangingHookKilled() async throws {
        let stack = try TestStack(name: "hang")
        defer { Task { await stack.tearDown() } }
        let pidFile = stack.root + "/hook-child.pid"
        try stack.writeManifest("hangs", """
            [service]
            name = "hangs"
            command = ["/bin/sleep", "1000"]
            [health]
            interval = "1s"
            timeout = "300ms"
            grace = "60s"
            [config]
            pid_file = "\(pidFile)"
            """)
        try stack.writeHook("hangs", "health-check", """
            #!/bin/sh
            sleep 1000 &
            echo $! > "$AUTOMATE_CFG_PID_FILE"
            wait
            """)
        let supervisor = try await startInBackground(stack)
        let status = try await stack.waitFor("hangs", within: .seconds(20)) { $0.health == "unknown" }
        #expect(status.healthMessage.contains("timed out"))
        #expect(status.state == "starting")
        let hookChild = try #require(pid_t((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        // Killed with its whole process group once the hook timed out.
        let deadline = ContinuousClock.now + .seconds(5)
        while livePids().contains(hookChild) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!livePids().contains(hookChild), "the hook's child \(hookChild) outlived the hook's timeout")
        _ = supervisor
    }

    @Test("kill -9 of the supervisor: every child (and grandchild) is gone within 2 s")
    func supervisorDeathKillsChildren() async throws {
        let stack = try TestStack(name: "orphans")
        defer { Task { await stack.tearDown() } }
        for name in ["alpha", "beta"] {
            try stack.writeManifest(name, """
                [service]
                name = "\(name)"
                command = ["/bin/sh", "-c", "sleep 1000 & sleep 1000 & wait"]
                """)
        }
        let start = try await stack.automate(["start", "--timeout", "30"])
        try #require(start.succeeded, "\(stack.failure(start))")
        let supervisorPid = try #require(SupervisorLock.holder(path: stack.home.lockFilePath))
        let before = processesMentioning(stack.home.path)
        #expect(before.count >= 7, "supervisor + 2 shells + 4 sleeps, found \(before)")
        kill(supervisorPid, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(2)
        var left = before
        while true {  // one look after the deadline too: this task may have waited for a thread
            left = processesMentioning(stack.home.path)
            if left.isEmpty || ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(left.isEmpty, "still alive 2 s after kill -9 of the supervisor: \(left)")
    }

    @Test("a dependent starts only after its dependency is healthy; stop goes in reverse order")
    func dependencyOrder() async throws {
        let stack = try TestStack(name: "deps")
        defer { Task { await stack.tearDown() } }
        let marker = stack.root + "/base-ready"
        try stack.writeManifest("base", """
            [service]
            name = "base"
            command = ["/bin/sh", "-c", "sleep 0.5; touch \(marker); exec sleep 1000"]
            [health]
            interval = "100ms"
            [config]
            marker = "\(marker)"
            """)
        try stack.writeHook("base", "health-check", "#!/bin/sh\n[ -e \"$AUTOMATE_CFG_MARKER\" ] && exit 0\necho not yet; exit 2\n")
        try stack.writeManifest("top", """
            [service]
            name = "top"
            depends_on = ["base"]
            command = ["/bin/sh", "-c", "[ -e \(marker) ] || { echo started too early; exit 9; }; exec sleep 1000"]
            [restart]
            policy = "never"
            """)
        let start = try await stack.automate(["start", "--timeout", "30"])
        #expect(start.succeeded, "\(start.output)\(start.error)")
        let statuses = try await stack.status()
        #expect(statuses.map(\.name) == ["base", "top"])
        #expect(statuses.allSatisfy { $0.state == "running" })
        let stop = try await stack.automate(["stop"])
        #expect(stop.succeeded)
        let log = try String(contentsOfFile: stack.home.supervisorLogPath, encoding: .utf8)
        let topStopped = try #require(log.range(of: "top stopped"))
        let baseStopped = try #require(log.range(of: "base stopped"))
        #expect(topStopped.lowerBound < baseStopped.lowerBound)
    }

    @Test("invalid manifests: nothing starts, the error names file, line and field")
    func invalidManifest() async throws {
        let stack = try TestStack(name: "invalid")
        defer { Task { await stack.tearDown() } }
        try stack.writeManifest("broken", """
            [service]
            name = "broken"
            command = ["/bin/true"]
            [restart]
            policy = "sometimes"
            """)
        let start = try await stack.automate(["start"])
        #expect(start.status == AutomateSupervisor.ExitStatus.exited(2))
        #expect(start.error.contains("broken.toml:5: restart.policy"), "\(start.error)")
        #expect(SupervisorLock.holder(path: stack.home.lockFilePath) == nil)
    }

    @Test("a hook or program its service's user cannot reach: nothing starts, the error names the folder and the user",
          .enabled(if: geteuid() == 0, "service users exist only when the supervisor runs as root"))
    func unreachableFiles() async throws {
        let stack = try TestStack(name: "unreachable")
        defer { Task { await stack.tearDown() } }
        try stack.writeManifest("worker", """
            [service]
            name = "worker"
            command = ["/bin/sleep", "600"]
            user = "automate"
            """)
        try stack.writeHook("worker", "init", "#!/bin/sh\nexit 0\n")
        // The hooks folder is root's alone, as a clone under /root is.
        chmod(stack.hooksDirectory, 0o700)
        let refused = try await stack.automate(["start", "--timeout", "30"])
        #expect(!refused.succeeded, "\(refused.output)\(refused.error)")
        #expect(refused.error.contains("worker runs as automate, who cannot reach \(stack.hooksDirectory)/worker/init: automate cannot enter \(stack.hooksDirectory) (drwx------ root:root)"),
                "\(refused.error)")
        #expect(SupervisorLock.holder(path: stack.home.lockFilePath) == nil)

        // A hook that is there but not readable by the user is named too.
        chmod(stack.hooksDirectory, 0o755)
        chmod(stack.hooksDirectory + "/worker/init", 0o700)
        let unreadable = try await stack.automate(["start", "--timeout", "30"])
        #expect(!unreadable.succeeded)
        #expect(unreadable.error.contains("automate cannot read and execute \(stack.hooksDirectory)/worker/init (-rwx------ root:root)"), "\(unreadable.error)")

        // Reachable again: the same stack starts.
        chmod(stack.hooksDirectory + "/worker/init", 0o755)
        let started = try await stack.automate(["start", "--timeout", "30"])
        #expect(started.succeeded, "\(started.output)\(started.error)")
        #expect(try await stack.status().first { $0.name == "worker" }?.state == "running")
    }

    /// Starts the supervisor through the CLI without waiting for health (for services that never get healthy).
    private func startInBackground(_ stack: TestStack) async throws -> CommandResult {
        let result = try await stack.automate(["start", "--timeout", "1"])
        guard SupervisorLock.holder(path: stack.home.lockFilePath) != nil else {
            throw TestFailure("the supervisor did not start: \(result.output)\(result.error)")
        }
        return result
    }
}
