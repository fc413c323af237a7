import AutomateSupervisor
import Foundation

/// Prints one line per service state change while the stack starts or stops.
final class ProgressPrinter: Sendable {
    private let width: Int
    private let quiet: Bool

    init(names: [String], quiet: Bool) {
        self.width = max(12, names.map(\.count).max() ?? 0)
        self.quiet = quiet
    }

    func report(_ status: ServiceStatus, elapsed: Duration) {
        guard !quiet else { return }
        let name = status.name.padding(toLength: max(width, status.name.count), withPad: " ", startingAt: 0)
        let state = status.state.padding(toLength: 9, withPad: " ", startingAt: 0)
        let time = String(format: "%6.2fs", elapsed.seconds)
        var detail = status.message
        if status.state == ServiceState.running.rawValue { detail = "pid \(status.pid), health \(status.health)" }
        print("  \(time)  \(name)  \(state)  \(detail)")
        StandardOutput.flush()
    }
}
