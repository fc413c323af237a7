import AutomateManifest
import AutomateSupervisor
import Foundation
import Logging
import Synchronization
import Testing

/// A `ServiceRunner` driven directly (no supervisor daemon), with real hooks and processes, stopped
/// while it starts.
@Suite("Service runner stops", .serialized)
struct ServiceRunnerStopTests {
    @Test("stop at random points of the start, 200 times: each stop returns in time and leaves no process")
    func stopAtRandomPoints() async throws {
        let stack = try TestStack(name: "stop-race")
        defer { try? FileManager.default.removeItem(atPath: stack.root) }
        // The init hook, the process (with a child of its own) and the health check each take a little time.
        try stack.writeManifest("racer", """
            [service]
            name = "racer"
            command = ["/bin/sh", "-c", "sleep 1000 & sleep 0.01; exec sleep 1000"]
            [health]
            interval = "50ms"
            grace = "30s"
            [stop]
            timeout = "3s"
            """)
        try stack.writeHook("racer", "init", "#!/bin/sh\nsleep 0.02\n")
        try stack.writeHook("racer", "health-check", "#!/bin/sh\nsleep 0.01\nexit 0\n")
        try stack.writeHook("racer", "post-stop", "#!/bin/sh\nexit 0\n")
        let (runner, states) = try Self.runner(stack, service: "racer")

        var hit: [String: Int] = [:]
        var slowest: Duration = .zero
        let began = ContinuousClock.now
        for round in 0..<200 {
            await runner.start()
            if round.isMultiple(of: 2) {
                // Half the rounds count from the moment the process exists: on a loaded machine the init
                // hook alone can outlast 50 ms, and the stops must land after the spawn too.
                let deadline = ContinuousClock.now + .seconds(30)
                while await runner.state.process == nil, await !runner.state.isAtRest, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            try await Task.sleep(for: .microseconds(Int.random(in: 0...50_000)))
            let stoppedIn = await runner.state
            hit[Self.phase(stoppedIn), default: 0] += 1
            let stopStarted = ContinuousClock.now
            // Generous: under a loaded machine forking the hooks alone can take seconds; a hang is forever.
            let stopped = await finishes(within: .seconds(30)) { await runner.stop() }
            try #require(stopped, "round \(round): stop() did not return within 30 s (stopped in \(stoppedIn))")
            slowest = max(slowest, ContinuousClock.now - stopStarted)
            #expect(await runner.state == .stopped, "round \(round)")
            #expect(states.last == .stopped, "round \(round): last broadcast \(String(describing: states.last))")
            let left = await Self.leftovers(of: stack, groups: Self.startedGroups(stack, service: "racer"))
            try #require(left.isEmpty, "round \(round) (stopped in \(stoppedIn)): still running: \(left)")
        }
        let total = ContinuousClock.now - began
        print("stop race: 200 rounds in \(total), slowest stop \(slowest), stops hit \(hit)")
        // The random points do land in the init hook and after the spawn.
        #expect(hit["init hook", default: 0] > 0)
        #expect(hit["starting", default: 0] + hit["running", default: 0] > 0)
        #expect(Self.startedGroups(stack, service: "racer").count > 10, "few rounds got as far as a process")
        // A stop signal that went missing shows as a process killed by the SIGKILL of the escalation (the
        // process ends at once on SIGTERM). The escalation alone is no proof: on a loaded machine the
        // exit of a process that did die of SIGTERM can be seen after the stop timeout ("killed by
        // SIGTERM" then follows it). Wall-clock time would depend on the machine's load.
        let log = (try? String(contentsOfFile: stack.home.logPath(service: "racer"), encoding: .utf8)) ?? ""
        // (Init hooks are killed with SIGKILL on purpose; only the service's process counts.)
        let killed = log.split(separator: "\n").filter { $0.contains("] process ") && $0.hasSuffix("killed by SIGKILL") }
        #expect(killed.isEmpty, "a stopped process had to be killed: its SIGTERM went missing: \(killed)")
    }

    @Test("a stop during a slow init hook kills the hook at once; nothing is spawned")
    func stopKillsInitHook() async throws {
        let stack = try TestStack(name: "stop-init")
        defer { try? FileManager.default.removeItem(atPath: stack.root) }
        let pidFile = stack.root + "/init.pid"
        try stack.writeManifest("slow", """
            [service]
            name = "slow"
            command = ["/bin/sleep", "1000"]
            [config]
            pid_file = "\(pidFile)"
            """)
        try stack.writeHook("slow", "init", "#!/bin/sh\necho $$ > \"$AUTOMATE_CFG_PID_FILE.tmp\"\nmv \"$AUTOMATE_CFG_PID_FILE.tmp\" \"$AUTOMATE_CFG_PID_FILE\"\nexec sleep 60\n")
        let (runner, states) = try Self.runner(stack, service: "slow")
        await runner.start()
        let deadline = ContinuousClock.now + .seconds(10)
        while !FileManager.default.fileExists(atPath: pidFile) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let hook = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(livePids().contains(hook))
        let started = ContinuousClock.now
        #expect(await finishes(within: .seconds(5)) { await runner.stop() })
        #expect(ContinuousClock.now - started < .seconds(2))
        #expect(!livePids().contains(hook), "the init hook \(hook) outlived the stop")
        #expect(await runner.state == .stopped)
        #expect(states.all.contains(.stopping))
        #expect(Self.startedGroups(stack, service: "slow").isEmpty, "a process was spawned after the stop")
        let log = try String(contentsOfFile: stack.home.logPath(service: "slow"), encoding: .utf8)
        #expect(log.contains("init hook killed by SIGKILL"), "\(log)")
    }

    // MARK: helpers

    /// Which part of the start `state` is (for the statistics of the random stops).
    static func phase(_ state: RunnerState) -> String {
        switch state {
        case .initializing: "init hook"
        case .spawning: "spawn"
        case .starting: "starting"
        case .running, .unhealthy: "running"
        default: "other"
        }
    }

    /// A runner for `service` of `stack`'s manifests, and the states it broadcasts.
    static func runner(_ stack: TestStack, service: String) throws -> (ServiceRunner, BroadcastStates) {
        let home = stack.home
        for folder in [home.path, home.runDirectory, home.logDirectory, home.dataDirectory] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        let manifests = try ManifestLoader.load(servicesDirectory: stack.servicesDirectory, home: home)
        let manifest = try #require(manifests.manifest(named: service))
        let layout = ServiceContext.Layout(
            home: home, hooksDirectory: stack.hooksDirectory, binDirectory: TestStack.binDirectory, toolsDirectories: [])
        let context = try ServiceContext.make(manifest: manifest, layout: layout, access: nil)
        let states = BroadcastStates()
        let runner = ServiceRunner(
            context: context, logger: Logger(label: "test.\(service)"),
            emit: { _, state, kind, _ in if kind == "state" { states.append(state) } },
            awaitDependencies: { _ in .ready })
        return (runner, states)
    }

    /// The process groups the runner started (it logs `started ... as pid N` for each).
    static func startedGroups(_ stack: TestStack, service: String) -> Set<pid_t> {
        let log = (try? String(contentsOfFile: stack.home.logPath(service: service), encoding: .utf8)) ?? ""
        var groups = Set<pid_t>()
        for line in log.split(separator: "\n") where line.contains("[supervisor] started ") {
            if let pid = line.split(separator: " ").last.flatMap({ pid_t($0) }) { groups.insert(pid) }
        }
        return groups
    }

    /// Live processes of the stack: its home in their environment (the process, its children, the
    /// hooks), or in one of the process groups it started; waits up to 2 s for ones already killed to go.
    static func leftovers(of stack: TestStack, groups: Set<pid_t>) async -> [pid_t] {
        let deadline = ContinuousClock.now + .seconds(2)
        while true {
            let left = Set(processesMentioning(stack.home.path)).union(livePids().filter { pid in
                guard let group = processGroup(of: pid) else { return false }
                return groups.contains(group)
            })
            if left.isEmpty || ContinuousClock.now > deadline { return left.sorted() }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The process group of `pid`, from `/proc/<pid>/stat`.
    static func processGroup(of pid: pid_t) -> pid_t? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm)": state ppid pgrp ...
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2 else { return nil }
        return pid_t(fields[2])
    }
}

/// The states a runner broadcast, in order.
final class BroadcastStates: Sendable {
    private let states = Mutex<[ServiceState]>([])
    func append(_ state: ServiceState) { states.withLock { $0.append(state) } }
    var all: [ServiceState] { states.withLock { $0 } }
    var last: ServiceState? { states.withLock { $0.last } }
}

/// Runs `work` and answers whether it finished within `timeout`, without waiting for it past that.
func finishes(within timeout: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
    let (stream, continuation) = AsyncStream<Bool>.makeStream()
    Task {
        await work()
        continuation.yield(true)
    }
    let timer = Task {
        try? await Task.sleep(for: timeout)
        continuation.yield(false)
    }
    var results = stream.makeAsyncIterator()
    let finished = await results.next() ?? false
    timer.cancel()
    continuation.finish()
    return finished
}
