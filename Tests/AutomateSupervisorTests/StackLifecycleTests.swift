import AutomateSupervisor
import Foundation
import Testing

/// The real stack: PostgreSQL and the search engine under the real supervisor, driven by the CLI.
@Suite("Real stack", .serialized)
struct StackLifecycleTests {
    private func makeRealStack(_ name: String) throws -> TestStack {
        let stack = try TestStack(name: name)
        try stack.useRepositoryService("automate-postgresql")
        try stack.useRepositoryService("automate-search")
        try stack.writeOverlay("automate-postgresql", "[config]\nport = \(TestStack.freePort())\n")
        try stack.writeOverlay("automate-search", "[config]\nport = \(TestStack.freePort())\n")
        return stack
    }

    @Test("start brings PostgreSQL and search up healthy; psql works; stop leaves no process")
    func startStatusStop() async throws {
        let stack = try makeRealStack("lifecycle")
        defer { Task { await stack.tearDown() } }

        let start = try await stack.automate(["start"])
        #expect(start.succeeded, "automate start: \(start.output)\(start.error)")
        #expect(start.output.contains("All 2 services are healthy"))

        let statuses = try await stack.status()
        #expect(statuses.map(\.name) == ["automate-postgresql", "automate-search"])
        for status in statuses {
            #expect(status.state == "running")
            #expect(status.health == "ok")
            #expect(status.pid > 0)
        }

        let json = try await stack.automate(["status", "--json"])
        #expect(json.succeeded)
        let object = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let services = object?["services"] as? [[String: Any]] ?? []
        #expect(services.count == 2)
        #expect(services.allSatisfy { $0["state"] as? String == "running" && ($0["pid"] as? Int ?? 0) > 0 })

        let psql = try await stack.automate(["psql", "--", "-tAc", "select 40 + 2"])
        #expect(psql.succeeded, "\(psql.error)")
        #expect(psql.output.trimmingCharacters(in: .whitespacesAndNewlines) == "42")

        // The log captured the server's own output under the service's name.
        let log = try String(contentsOfFile: stack.home.logPath(service: "automate-postgresql"), encoding: .utf8)
        #expect(log.contains("[hook:init]"))
        #expect(log.contains("database system is ready to accept connections"))

        let pids = statuses.map(\.pid)
        let stop = try await stack.automate(["stop"])
        #expect(stop.succeeded, "\(stop.output)\(stop.error)")
        let alive = livePids()
        for pid in pids { #expect(!alive.contains(pid), "service pid \(pid) still alive after stop") }
        #expect(processesMentioning(stack.home.path).isEmpty, "processes of the stack left: \(processesMentioning(stack.home.path))")

        let after = try await stack.automate(["status"])
        #expect(after.status == AutomateSupervisor.ExitStatus.exited(3))
        #expect(after.error.contains("not running"))
    }

    @Test("kill -9 of PostgreSQL: back within its backoff, restart counted")
    func killedServiceRestarts() async throws {
        let stack = try makeRealStack("kill")
        defer { Task { await stack.tearDown() } }
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(start.output)\(start.error)")
        let before = try #require(try await stack.status().first { $0.name == "automate-postgresql" })
        let killedAt = ContinuousClock.now
        kill(before.pid, SIGKILL)
        let after = try await stack.waitFor("automate-postgresql", within: .seconds(60)) {
            $0.state == "running" && $0.pid > 0 && $0.pid != before.pid
        }
        #expect(after.restarts == before.restarts + 1)
        #expect(after.lastExit == "killed by SIGKILL")
        // Backoff cap is 30 s; crash recovery of PostgreSQL takes a few seconds at most.
        #expect(ContinuousClock.now - killedAt < .seconds(40))
        let psql = try await stack.automate(["psql", "--", "-tAc", "select 1"])
        #expect(psql.succeeded)
    }
}
