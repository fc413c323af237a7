import ArgumentParser
import AutomateManifest
import AutomateSupervisor
import CAutomateShims
import Foundation

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the stack and wait until every service is healthy.",
        discussion: """
            Launches automate-supervisor in the background (its log: <home>/logs/supervisor.log), then \
            shows each service as it comes up. Exits 0 once all are healthy, 1 if one fails or the wait \
            times out. With --foreground the supervisor runs in this process (for systemd and containers).
            """)

    @OptionGroup var homeOptions: HomeOptions

    @Flag(help: "Run the supervisor in the foreground, logging to stderr, until it is stopped.")
    var foreground = false

    @Option(help: "Seconds to wait for every service to become healthy.")
    var timeout: Int = 300

    @Flag(help: "Print nothing but errors.")
    var quiet = false

    @Option(help: ArgumentHelp("Start only this service and its dependencies; the others stay held (restore). Repeatable.", visibility: .hidden))
    var startOnly: [String] = []

    func run() async throws {
        let home = homeOptions.resolved
        let location = try StackLocation.discover()
        // Refuse bad manifests before anything starts, with every error named.
        let manifests = try location.manifests(home: home, failure: "invalid manifests, nothing was started")
        var expected = manifests.startOrder
        if !startOnly.isEmpty {
            if let unknown = startOnly.first(where: { manifests.manifest(named: $0) == nil }) {
                throw CLIError("--start-only \(unknown): no such service", exitCode: 2)
            }
            expected = manifests.withDependencies(of: startOnly)
        }
        let supervisorPath = location.binDirectory + "/automate-supervisor"
        guard access(supervisorPath, X_OK) == 0 else {
            throw CLIError("\(supervisorPath) is missing: build it (swift build) or reinstall with scripts/install.sh")
        }
        var arguments = [
            "--home", home.path, "--services", location.servicesDirectory, "--hooks", location.hooksDirectory,
            "--bin-dir", location.binDirectory,
        ]
        for tools in location.toolsDirectories { arguments += ["--tools-dir", tools] }
        for name in startOnly { arguments += ["--start-only", name] }

        if foreground {
            try execute(supervisorPath, arguments + ["--foreground"])
        }

        let started = ContinuousClock.now
        if let pid = SupervisorLock.holder(path: home.lockFilePath) {
            if !quiet { print("The supervisor is already running (pid \(pid)) for \(home.path).") }
        } else {
            try launchDaemon(supervisorPath, arguments: arguments, home: home)
        }
        let client = try await SupervisorClient.connect(home: home)
        defer { Task { await client.close() } }
        if startOnly.isEmpty {
            // Services a restore left held (it failed, or it was run with --start-only) start now.
            for status in try await client.status().services where status.state == ServiceState.held.rawValue {
                if !quiet { print("Starting \(status.name), held until now.") }
                _ = try await client.start(status.name)
            }
        }
        try await waitUntilHealthy(client: client, names: expected, started: started)
    }

    /// Starts the supervisor in its own session and waits for its readiness line.
    private func launchDaemon(_ path: String, arguments: [String], home: AutomateHome) throws {
        try FileManager.default.createDirectory(atPath: home.logDirectory, withIntermediateDirectories: true)
        let outputPath = home.logDirectory + "/supervisor.out"
        let output = open(outputPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard output >= 0 else { throw CLIError("cannot open \(outputPath): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        var ready: [Int32] = [-1, -1]
        guard automate_pipe_cloexec(&ready) == 0 else { throw CLIError("cannot make a pipe: \(String(cString: strerror(errno)))") }
        var options = ChildProcess.Options(
            executable: path, arguments: arguments + ["--ready-fd", "3"],
            environment: ProcessInfo.processInfo.environment)
        options.standardOutput = output
        options.standardError = output
        options.extraDescriptor = ready[1]
        options.newSession = true
        options.deathSignal = 0
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(options)
        } catch {
            close(ready[0])
            close(ready[1])
            throw CLIError("\(error)")
        }
        close(ready[1])
        defer { close(ready[0]) }
        if !quiet { print("Started automate-supervisor (pid \(child.pid)) for \(home.path)") }
        // Its first line says whether it got as far as serving the control socket.
        var line = [UInt8]()
        let deadline = ContinuousClock.now + .seconds(60)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            let remaining = deadline - ContinuousClock.now
            let readable = automate_poll_readable(ready[0], Int32(clamping: remaining.components.seconds * 1000 + 1))
            if readable <= 0 { break }
            let n = read(ready[0], &buffer, buffer.count)
            if n <= 0 { break }
            line += buffer[..<n]
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("ready") { return }
        if text.hasPrefix("error: ") {
            throw CLIError(String(text.dropFirst(7)), exitCode: text.contains("invalid manifests") ? 2 : 1)
        }
        throw CLIError("automate-supervisor did not become ready (see \(outputPath) and \(home.supervisorLogPath))")
    }

    /// Follows the supervisor's events until every service of `names` runs, one fails, or the timeout passes.
    private func waitUntilHealthy(client: SupervisorClient, names: [String], started: ContinuousClock.Instant) async throws {
        let deadline = Duration.seconds(timeout)
        let stream = client.watch(includeCurrent: true)
        let printer = ProgressPrinter(names: names, quiet: quiet)
        let outcome: Result<Void, CLIError>? = try await withThrowingTaskGroup(of: Result<Void, CLIError>?.self) { group in
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            group.addTask {
                var states: [String: String] = [:]
                for try await event in stream where !event.service.isEmpty && event.hasStatus {
                    let status = event.status
                    if states[status.name] != status.state {
                        states[status.name] = status.state
                        printer.report(status, elapsed: ContinuousClock.now - started)
                    }
                    if status.state == ServiceState.failed.rawValue {
                        return .failure(CLIError(
                            "\(status.name) failed: \(status.message)\n  see `automate logs \(status.name)`"))
                    }
                    if names.allSatisfy({ states[$0] == ServiceState.running.rawValue }) {
                        return .success(())
                    }
                }
                return .failure(CLIError("the supervisor stopped while services were starting; see \(client.home.supervisorLogPath)"))
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        guard let outcome else {
            let pending = try await client.status().services.filter { names.contains($0.name) && $0.state != ServiceState.running.rawValue }
            throw CLIError(
                "not every service was healthy after \(timeout)s: "
                    + pending.map { "\($0.name) (\($0.state): \($0.explanation))" }.joined(separator: ", ")
                    + "; the supervisor keeps trying, see `automate status`")
        }
        try outcome.get()
        if !quiet {
            let seconds = String(format: "%.2f", (ContinuousClock.now - started).seconds)
            print("All \(names.count) services are healthy (\(seconds)s).")
        }
    }
}

/// Replaces this process with another program (for `--foreground`, `logs`, `psql`), with `environment`
/// when given (else this one's).
func execute(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Never {
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    if let environment {
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve(path, argv, envp)
    } else {
        execv(path, argv)
    }
    throw CLIError("cannot run \(path): \(String(cString: strerror(errno)))")
}
