@testable import AutomateSupervisor
import Foundation
import Testing

@Suite("Child processes and logs")
struct ChildProcessTests {
    @Test("exit codes, signals, and a missing program")
    func exitStatuses() async throws {
        let env = ["PATH": "/usr/bin:/bin"]
        let ok = try ChildProcess.spawn(.init(executable: "true", environment: env))
        #expect(await ok.waitForExit() == .exited(0))
        let code = try ChildProcess.spawn(.init(executable: "/bin/sh", arguments: ["-c", "exit 7"], environment: env))
        #expect(await code.waitForExit() == .exited(7))
        let slow = try ChildProcess.spawn(.init(executable: "sleep", arguments: ["100"], environment: env))
        #expect(await slow.waitForExit(timeout: .milliseconds(50)) == nil)
        slow.signalGroup(SIGTERM)
        #expect(await slow.waitForExit() == .signaled(SIGTERM))
        #expect(throws: ChildProcess.SpawnError.self) {
            try ChildProcess.spawn(.init(executable: "/nonexistent/program", environment: env))
        }
        do {
            _ = try ChildProcess.spawn(.init(executable: "no-such-program-anywhere", environment: env))
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("not found in PATH"))
        }
    }

    /// A CI run once saw `automate backup create` "killed by SIGKILL" at once, with no output: the test
    /// runner's pid counter had wrapped (pid_max 32768), the CLI got the pid of a child killed earlier whose
    /// exit was never forgotten, and the reaper handed the new child that old exit.
    @Test("a pid the kernel hands out again does not inherit the exit recorded for its earlier holder")
    func reusedPid() async throws {
        let env = ["PATH": "/usr/bin:/bin"]
        let earlier = try ChildProcess.spawn(.init(executable: "/bin/sh", arguments: ["-c", "kill -9 $$"], environment: env))
        #expect(await earlier.waitForExit() == .signaled(SIGKILL))
        // Not forgotten (as a caller may leave it). The same number registered again, as a spawn that
        // got it from the kernel would: the new holder has not exited.
        let again = ProcessReaper.shared.registering { () -> pid_t in earlier.pid }
        #expect(again == earlier.pid)
        #expect(await ProcessReaper.shared.waitForExit(pid: again, timeout: .milliseconds(100)) == nil)
    }

    @Test("the child leads its own process group; signalling the group reaches grandchildren")
    func processGroup() async throws {
        let env = ["PATH": "/usr/bin:/bin"]
        let child = try ChildProcess.spawn(.init(executable: "/bin/sh", arguments: ["-c", "sleep 100 & wait"], environment: env))
        #expect(getpgid(child.pid) == child.pid)
        child.signalGroup(SIGKILL)
        #expect(await child.waitForExit() == .signaled(SIGKILL))
    }

    @Test("log files rotate by size and keep the newest lines")
    func logRotation() throws {
        let folder = FileManager.default.temporaryDirectory.path + "/automate-log-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let log = LogFile(path: folder + "/svc.log", maxBytes: 1000, keep: 2)
        for i in 0..<100 { log.append("line \(i) " + String(repeating: "x", count: 40), source: "stdout") }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files == ["svc.log", "svc.log.1", "svc.log.2"])
        let current = try String(contentsOfFile: folder + "/svc.log", encoding: .utf8)
        #expect(current.contains("line 99 "))
        #expect(current.utf8.count <= 1000)
        #expect(current.hasSuffix("\n"))
    }
}
