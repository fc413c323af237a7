import ArgumentParser
import AutomateSupervisor
import Foundation

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow the supervisor's events (state and health changes, exits) as they happen.",
        discussion: "One line per event; --json prints JSON lines with the supervisor's own timestamps.")

    @OptionGroup var homeOptions: HomeOptions

    @Flag(help: "Print JSON lines.")
    var json = false

    @Flag(help: "Start with one event per service holding its current status.")
    var current = false

    func run() async throws {
        let client = try await SupervisorClient.connect(home: homeOptions.resolved)
        do {
            for try await event in client.watch(includeCurrent: current) {
                if json {
                    var object: [String: Any] = [
                        "at_unix_ms": event.atUnixMs, "service": event.service, "kind": event.kind, "message": event.message,
                    ]
                    if event.hasStatus {
                        object["state"] = event.status.state
                        object["pid"] = Int(event.status.pid)
                        object["health"] = event.status.health
                        object["restarts"] = Int(event.status.restarts)
                    }
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    let time = Date(timeIntervalSince1970: Double(event.atUnixMs) / 1000)
                    print("\(LogFormatting.time(time))  \(event.kind.padding(toLength: 10, withPad: " ", startingAt: 0))  \(event.message)")
                }
                StandardOutput.flush()
            }
        } catch {
            throw explain(error)
        }
    }
}

enum LogFormatting {
    /// `08:12:23.123` in local time.
    static func time(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        localtime_r(&seconds, &parts)
        let ms = Int(date.timeIntervalSince1970 * 1000) % 1000
        return String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, ms)
    }
}
