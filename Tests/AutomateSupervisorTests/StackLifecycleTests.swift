import AutomateSupervisor
import Foundation
import SidecarTestSupport
import Testing

/// The real stack: PostgreSQL and the search engine under the real supervisor, driven by the CLI.
@Suite("Real stack", .serialized)
struct StackLifecycleTests {
    private func makeRealStack(_ name: String) throws -> TestStack {
        let stack = try TestStack(name: name)
        try stack.useRepositoryService("automate-postgresql")
        try stack.useRepositoryService("automate-search")
        try stack.writeOverlay("automate-postgresql", "[config]\nport = \(Fixture.freePort())\n")
        try stack.writeOverlay("automate-search", "[config]\nport = \(Fixture.freePort())\n")
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
        try #require(start.succeeded, "\(stack.failure(start))")
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

    @Test("the search engine keeps its documents across automate stop / start (saved by es-sidecar-service)")
    func searchPersistence() async throws {
        let stack = try TestStack(name: "persist")
        defer { Task { await stack.tearDown() } }
        for service in ["automate-postgresql", "automate-search", "backup-gateway", "pg-sidecar-service", "es-sidecar-service"] {
            try stack.useRepositoryService(service)
        }
        let pg = Fixture.freePort(), search = Fixture.freePort()
        try stack.writeOverlay("automate-postgresql", "[config]\nport = \(pg)\n")
        try stack.writeOverlay("pg-sidecar-service", "[config]\npg_port = \(pg)\n")
        try stack.writeOverlay("automate-search", "[config]\nport = \(search)\n")
        try stack.writeOverlay("es-sidecar-service", "[config]\nsearch_url = \"http://127.0.0.1:\(search)\"\n")
        try stack.writeOverlay("backup-gateway", "[config]\nport = \(Fixture.freePort())\n")
        let start = try await stack.automate(["start", "--timeout", "120"])
        try #require(start.succeeded, "\(stack.failure(start))")

        let environment = ProcessInfo.processInfo.environment
        let url = "http://127.0.0.1:\(search)/reports/_doc/r1"
        let put = try await CommandResult.run("/usr/bin/curl", ["-fsS", "-XPUT", url + "?refresh=true", "-H", "content-type: application/json",
                                                                "-d", "{\"title\":\"bericht über Prüfung\"}"], environment: environment)
        try #require(put.succeeded, "\(put.error)")
        let stop = try await stack.automate(["stop"])
        try #require(stop.succeeded, "\(stop.error)")
        let again = try await stack.automate(["start", "--timeout", "120"])
        try #require(again.succeeded, "\(again.output)\(again.error)")
        // The sidecar reloads the save once the empty engine is back: poll, with a deadline.
        let deadline = ContinuousClock.now + .seconds(30)
        var found = ""
        while ContinuousClock.now < deadline {
            let get = try await CommandResult.run("/usr/bin/curl", ["-fsS", url], environment: environment)
            if get.succeeded { found = get.output; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(found.contains("bericht über Prüfung"), "document lost across stop/start: \(found)")
    }
}
