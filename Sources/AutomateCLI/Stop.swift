import ArgumentParser
import AutomateSupervisor
import CAutomateShims
import Foundation

struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop every service (in reverse dependency order) and the supervisor.",
        discussion: "Returns once the supervisor has exited. Stopping a stack that is not running is not an error.")

    @OptionGroup var homeOptions: HomeOptions

    @Option(help: "Seconds to wait for the supervisor to exit.")
    var timeout: Int = 600

    @Flag(help: "Print nothing unless it fails.")
    var quiet = false

    func run() async throws {
        let home = homeOptions.resolved
        guard let holder = SupervisorLock.holder(path: home.lockFilePath) else {
            if !quiet { print("The supervisor is not running for \(home.path).") }
            return
        }
        // Opened before asking it to stop: the descriptor turns readable when the supervisor exits.
        let pidfd = automate_pidfd_open(holder)
        let client = try await SupervisorClient.connect(home: home)
        let started = ContinuousClock.now
        let printer = ProgressPrinter(names: [], quiet: quiet)
        let events = Task {
            var seen: [String: String] = [:]
            for try await event in client.watch(includeCurrent: false) where event.hasStatus {
                let state = event.status.state
                guard state == ServiceState.stopped.rawValue || state == ServiceState.stopping.rawValue,
                      seen[event.status.name] != state else { continue }
                seen[event.status.name] = state
                printer.report(event.status, elapsed: ContinuousClock.now - started)
            }
        }
        let pid: Int32
        do {
            pid = try await client.shutdown()
        } catch {
            throw explain(error)
        }
        if !quiet { print("Stopping the stack (supervisor pid \(pid))...") }
        defer { events.cancel() }
        if pidfd >= 0 {
            defer { close(pidfd) }
            let exited = await Task.detached { automate_poll_readable(pidfd, Int32(timeout) * 1000) }.value
            guard exited == 1 else {
                throw CLIError("the supervisor (pid \(pid)) is still stopping after \(timeout)s; see \(home.supervisorLogPath)")
            }
        }
        let seconds = String(format: "%.2f", (ContinuousClock.now - started).seconds)
        if !quiet { print("Stopped (\(seconds)s).") }
    }
}
