import AutomateRPC
import AutomateSupervisor
import Foundation
import SidecarTestSupport
import Synchronization
import Testing

/// A throw-away stack for one test: its own home in a temp folder, its own services folder (copied
/// from the repository's or written by the test), free loopback ports, and the real `automate` and
/// `automate-supervisor` executables from this build.
final class TestStack: @unchecked Sendable {
    let root: String
    let home: AutomateHome
    let servicesDirectory: String
    let hooksDirectory: String

    /// The folder holding this build's executables (next to the test bundle).
    static let binDirectory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = (exe as NSString).deletingLastPathComponent
        // swift-testing runs inside <bin>/<package>PackageTests.xctest
        while !FileManager.default.fileExists(atPath: directory + "/automate-supervisor") && directory != "/" {
            directory = (directory as NSString).deletingLastPathComponent
        }
        return directory
    }()

    /// The repository root (for its services/ and hooks/).
    static let repository: String = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
        while !FileManager.default.fileExists(atPath: directory + "/Package.swift") && directory != "/" {
            directory = (directory as NSString).deletingLastPathComponent
        }
        return directory
    }()

    init(name: String) throws {
        let base = FileManager.default.temporaryDirectory.path + "/automate-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        // Sticky and open to all: test services run as users of their own and leave marker files here.
        chmod(base, 0o1777)
        root = base
        home = AutomateHome(path: base + "/home")
        servicesDirectory = base + "/services"
        hooksDirectory = base + "/hooks"
        try FileManager.default.createDirectory(atPath: servicesDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: hooksDirectory, withIntermediateDirectories: true)
        _ = Self.live.withLock { $0.insert(base) }
        Self.sweepAtExit
    }

    /// Stacks made and not torn down yet. Tests tear down in a `defer`ed task that the test process
    /// does not wait for: the last test's can be cut short by the process exiting.
    private static let live = Mutex(Set<String>())

    /// At exit, every stack still running is stopped (its supervisor signalled, its lock awaited) and
    /// its folder deleted, so that no test run leaves a stack behind.
    private static let sweepAtExit: Void = {
        atexit {
            for root in TestStack.live.withLock({ $0 }) {
                let lock = AutomateHome(path: root + "/home").lockFilePath
                if let pid = SupervisorLock.holder(path: lock) {
                    kill(pid, SIGTERM)
                    let deadline = ContinuousClock.now + .seconds(60)
                    while SupervisorLock.holder(path: lock) != nil && ContinuousClock.now < deadline { usleep(50_000) }
                }
                if ProcessInfo.processInfo.environment["AUTOMATE_TEST_KEEP"] == nil { try? FileManager.default.removeItem(atPath: root) }
            }
        }
    }()

    /// Copies the repository's manifest and hooks of `service`.
    func useRepositoryService(_ service: String) throws {
        try FileManager.default.copyItem(
            atPath: Self.repository + "/services/\(service).toml", toPath: servicesDirectory + "/\(service).toml")
        let hooks = Self.repository + "/hooks/\(service)"
        if FileManager.default.fileExists(atPath: hooks) {
            try FileManager.default.copyItem(atPath: hooks, toPath: hooksDirectory + "/\(service)")
        }
    }

    /// Writes a manifest.
    func writeManifest(_ service: String, _ text: String) throws {
        try text.write(toFile: servicesDirectory + "/\(service).toml", atomically: true, encoding: .utf8)
    }

    /// Writes an executable hook.
    func writeHook(_ service: String, _ hook: String, _ script: String) throws {
        let folder = hooksDirectory + "/\(service)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try script.write(toFile: folder + "/\(hook)", atomically: true, encoding: .utf8)
        chmod(folder + "/\(hook)", 0o755)
    }

    /// Writes a config overlay (`<home>/config/<service>.toml`).
    func writeOverlay(_ service: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: home.configDirectory, withIntermediateDirectories: true)
        try text.write(toFile: home.configOverlayPath(service: service), atomically: true, encoding: .utf8)
    }

    /// Runs `automate <arguments>` against this stack.
    @discardableResult
    func automate(_ arguments: [String]) async throws -> CommandResult {
        var environment = ProcessInfo.processInfo.environment
        environment["AUTOMATE_HOME"] = home.path
        environment["AUTOMATE_SERVICES_DIR"] = servicesDirectory
        environment["AUTOMATE_HOOKS_DIR"] = hooksDirectory
        if let boundingSet {
            // As a systemd unit's CapabilityBoundingSet= would run it (and the supervisor it starts).
            return try await CommandResult.run(
                "/usr/bin/setpriv", ["--bounding-set=\(boundingSet)", Self.binDirectory + "/automate"] + arguments, environment: environment)
        }
        return try await CommandResult.run(Self.binDirectory + "/automate", arguments, environment: environment)
    }

    /// When set (`setpriv --bounding-set` syntax: `-all,+chown,...`), every `automate` command runs
    /// with its capabilities limited to it.
    var boundingSet: String?

    /// The control service client.
    func client() async throws -> RPCClient {
        try await RPCClient.connect(socketPath: home.controlSocketPath)
    }

    /// Every service's status.
    func status() async throws -> [ServiceStatus] {
        let client = try await client()
        defer { Task { await client.close() } }
        return try await client.call(SupervisorService.status, ControlService.StatusRequest()).services
    }

    /// Waits (on the supervisor's event stream, with a deadline) until `predicate` holds for `service`.
    @discardableResult
    func waitFor(
        _ service: String, within timeout: Duration = .seconds(60),
        _ predicate: @escaping @Sendable (ServiceStatus) -> Bool
    ) async throws -> ServiceStatus {
        let client = try await client()
        defer { Task { await client.close() } }
        var request = ControlService.WatchRequest()
        request.includeCurrent = true
        let stream = client.stream(SupervisorService.watch, request)
        return try await withThrowingTaskGroup(of: ServiceStatus?.self) { group in
            group.addTask {
                for try await event in stream where event.hasStatus && event.status.name == service {
                    if predicate(event.status) { return event.status }
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let first else {
                let now = try await self.status().first { $0.name == service }
                throw TestFailure("\(service) did not reach the expected state within \(timeout); now: \(String(describing: now))")
            }
            return first
        }
    }

    /// Stops the stack if it runs and deletes the temp folder.
    func tearDown() async {
        if SupervisorLock.holder(path: home.lockFilePath) != nil {
            _ = try? await automate(["stop"])
        }
        // AUTOMATE_TEST_KEEP=1 keeps every stack's folder (logs, data, repository) for a look afterwards.
        if ProcessInfo.processInfo.environment["AUTOMATE_TEST_KEEP"] == nil { try? FileManager.default.removeItem(atPath: root) }
        _ = Self.live.withLock { $0.remove(root) }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A finished command: exit status and what it printed.
struct CommandResult: Sendable {
    let status: AutomateSupervisor.ExitStatus
    let output: String
    let error: String

    var succeeded: Bool { status.isSuccess }

    static func run(_ path: String, _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> CommandResult {
        let outPath = FileManager.default.temporaryDirectory.path + "/automate-cmd-\(UUID().uuidString)"
        let errPath = outPath + ".err"
        let out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let err = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        var options = ChildProcess.Options(executable: path, arguments: arguments, environment: environment)
        options.standardOutput = out
        options.standardError = err
        options.deathSignal = 0
        let child = try ChildProcess.spawn(options)
        close(out)
        close(err)
        let status = await child.waitForExit()
        child.forget()
        return CommandResult(
            status: status,
            output: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            error: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }
}

/// Processes alive now (pid → command line), from /proc.
func livePids() -> Set<pid_t> {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    var pids = Set<pid_t>()
    for entry in entries {
        guard let pid = pid_t(entry) else { continue }
        // Zombies are dead: only count processes that are not in state Z.
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            let state = stat[stat.index(close, offsetBy: 2)]
            if state == "Z" { continue }
        }
        pids.insert(pid)
    }
    return pids
}

/// Every process whose environment mentions `needle` (the stack's home), read from /proc.
func processesMentioning(_ needle: String) -> [pid_t] {
    livePids().filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        return String(decoding: data, as: UTF8.self).contains(needle)
    }.sorted()
}
