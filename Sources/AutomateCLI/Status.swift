import ArgumentParser
import AutomateSupervisor
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every service: state, health, pid, uptime, restarts.",
        discussion: """
            Exit status: 0 when every service is running and healthy, 1 when one is not, 3 when the \
            supervisor is not running.
            """)

    @OptionGroup var homeOptions: HomeOptions

    @Flag(help: "Print JSON: the supervisor and each service's name, state, pid, restarts and health.")
    var json = false

    func run() async throws {
        let home = homeOptions.resolved
        let client = try await SupervisorClient.connect(home: home)
        let response: ControlService.StatusResponse
        do {
            response = try await client.status()
        } catch {
            throw explain(error)
        }
        await client.close()
        if json {
            print(StatusRendering.json(response))
        } else {
            print(StatusRendering.table(response, now: Date()), terminator: "")
            // The WAL archiver, while the pg-sidecar runs: failing archiving is data at risk.
            if let archiver = await WALArchiverStatus.fetch(home: home).status { print(WALArchiverStatus.line(archiver, now: Date()).text) }
        }
        if !response.services.allSatisfy({ $0.state == ServiceState.running.rawValue }) {
            throw ExitCode(1)
        }
    }
}

extension ServiceStatus {
    /// What to show beside the state: the health check's last word while the process runs (an external
    /// server's watcher says there why the server cannot be used), else the supervisor's message.
    var explanation: String {
        let checked = [ServiceState.running, .starting, .unhealthy].map(\.rawValue).contains(state)
        if state == ServiceState.running.rawValue || checked && !healthMessage.isEmpty { return healthMessage }
        return message
    }
}

/// How `automate status` shows the stack.
enum StatusRendering {
    static func table(_ response: ControlService.StatusResponse, now: Date) -> String {
        let header = ["SERVICE", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "MESSAGE"]
        var rows: [[String]] = []
        for s in response.services {
            let uptime = s.startedAtUnixMs > 0 && s.pid > 0
                ? formatDuration(now.timeIntervalSince1970 - Double(s.startedAtUnixMs) / 1000) : "-"
            rows.append([s.name, s.state, s.health, s.pid > 0 ? String(s.pid) : "-", uptime, String(s.restarts), s.explanation])
        }
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < 6 { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in i < 6 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) : cell }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces) + "\n"
        }
        let rss = String(format: "%.1f MB", Double(response.supervisorRssBytes) / 1_048_576)
        let up = formatDuration(now.timeIntervalSince1970 - Double(response.supervisorStartedAtUnixMs) / 1000)
        var out = "supervisor pid \(response.supervisorPid), up \(up), RSS \(rss), home \(response.home)\n"
        out += line(header)
        for row in rows { out += line(row) }
        return out
    }

    static func json(_ response: ControlService.StatusResponse) -> String {
        let services: [[String: Any]] = response.services.map { s in
            [
                "name": s.name, "state": s.state, "pid": Int(s.pid), "restarts": Int(s.restarts),
                "health": s.health, "health_message": s.healthMessage, "started_at_unix_ms": s.startedAtUnixMs,
                "last_exit": s.lastExit, "message": s.message, "kind": s.kind, "depends_on": s.dependsOn,
            ]
        }
        let object: [String: Any] = [
            "supervisor": [
                "pid": Int(response.supervisorPid), "started_at_unix_ms": response.supervisorStartedAtUnixMs,
                "rss_bytes": response.supervisorRssBytes, "home": response.home,
            ],
            "services": services,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func formatDuration(_ seconds: Double) -> String {
        let s = Int(max(0, seconds))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        if s < 86400 { return "\(s / 3600)h\((s % 3600) / 60)m" }
        return "\(s / 86400)d\((s % 86400) / 3600)h"
    }
}
