import BackupContract
import Foundation

/// Shows a stack backup's progress: one bar per service redrawn in place on a terminal, or a plain line
/// per change (phase, state, every 10% of bytes) when the output is not a terminal.
final class BackupProgressView {
    private let terminal: Bool
    private let quiet: Bool
    private var drawnLines = 0
    private var lastLine: [String: String] = [:]
    private let started = ContinuousClock.now

    init(quiet: Bool) {
        self.quiet = quiet
        self.terminal = isatty(STDOUT_FILENO) == 1
    }

    func show(_ backup: StackBackup) {
        guard !quiet else { return }
        let width = max(18, backup.services.map(\.service.count).max() ?? 0)
        let lines = backup.services.map { Self.line($0, width: width, bar: terminal) }
        if terminal {
            var out = drawnLines > 0 ? "\u{1B}[\(drawnLines)A" : ""
            for line in lines { out += "\u{1B}[2K" + line + "\n" }
            drawnLines = lines.count
            FileHandle.standardOutput.write(Data(out.utf8))
            return
        }
        let elapsed = String(format: "%7.1fs", (ContinuousClock.now - started).seconds)
        for (service, line) in zip(backup.services, backup.services.map { Self.line($0, width: width, bar: false) }) {
            let key = Self.coarse(service)
            if lastLine[service.service] != key {
                lastLine[service.service] = key
                print("\(elapsed)  \(line)")
            }
        }
        StandardOutput.flush()
    }

    /// What must change for a plain line to be printed again.
    static func coarse(_ s: ServiceBackupStatus) -> String {
        if s.state != .running { return "\(s.state.rawValue)" }
        let p = s.progress
        let tenth = p.bytesTotal > 0 ? min(10, p.bytesDone * 10 / p.bytesTotal) : 0
        return "\(s.state.rawValue)/\(p.phase)/\(tenth)/\(s.error)"
    }

    static func stateName(_ state: BackupOperationState) -> String {
        switch state {
        case .running: return "running"
        case .completed: return "done"
        case .failed: return "FAILED"
        case .cancelled: return "cancelled"
        default: return "-"
        }
    }

    static func line(_ s: ServiceBackupStatus, width: Int, bar: Bool) -> String {
        let name = s.service.padding(toLength: width, withPad: " ", startingAt: 0)
        let p = s.progress
        let state: String
        switch s.state {
        case .completed: state = "done"
        case .failed: state = "FAILED"
        case .cancelled: state = "cancelled"
        default: state = p.phase.isEmpty ? "running" : p.phase
        }
        var amount = BackupTable.bytes(s.artifacts.isEmpty ? p.bytesDone : s.artifacts.reduce(0) { $0 + $1.size })
        if s.state == .running, p.bytesTotal > 0 { amount += " / " + BackupTable.bytes(p.bytesTotal) }
        if p.itemsTotal > 0 { amount += "  \(p.itemsDone)/\(p.itemsTotal) items" }
        if p.newBytes > 0 || p.reusedBytes > 0 { amount += "  \(BackupTable.bytes(p.newBytes)) new, \(BackupTable.bytes(p.reusedBytes)) reused" }
        var text = "\(name)  "
        if bar {
            let fraction = s.state == .completed ? 1.0 : p.bytesTotal > 0 ? min(1, Double(p.bytesDone) / Double(p.bytesTotal)) : 0
            let filled = Int(fraction * 24)
            text += "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: 24 - filled) + "]  "
        }
        text += "\(state.padding(toLength: 10, withPad: " ", startingAt: 0))  \(amount)"
        if !s.error.isEmpty { text += "  \(s.error)" }
        return text
    }
}
