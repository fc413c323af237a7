import ArgumentParser
import AutomateSupervisor
import Foundation

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a service's log (its stdout, stderr and hooks), or the supervisor's.",
        discussion: "Logs live in <home>/logs/<service>.log, rotated by size to .log.1 ... .log.3.")

    @OptionGroup var homeOptions: HomeOptions

    @Argument(help: "A service name, or `supervisor`.")
    var service: String

    @Flag(name: .shortAndLong, help: "Keep following the log.")
    var follow = false

    @Option(name: .shortAndLong, help: "How many lines of the end to show.")
    var lines: Int = 200

    func run() async throws {
        let home = homeOptions.resolved
        let path = service == "supervisor" ? home.supervisorLogPath : home.logPath(service: service)
        guard FileManager.default.fileExists(atPath: path) else {
            let known = (try? FileManager.default.contentsOfDirectory(atPath: home.logDirectory))?
                .filter { $0.hasSuffix(".log") }.map { String($0.dropLast(4)) }.sorted() ?? []
            throw CLIError("no log for \"\(service)\" at \(path)" + (known.isEmpty ? "" : " (logs exist for: \(known.joined(separator: ", ")))"))
        }
        try execute("/usr/bin/tail", ["-n", String(lines)] + (follow ? ["-F"] : []) + [path])
    }
}
