import CSystemd
import Foundation

/// Sends a service's lines to journald (sd_journal_sendv through libsystemd) under
/// `SYSLOG_IDENTIFIER=<service>`, so `journalctl -t <service>` shows them.
public struct JournalLog: LineSink {
    /// The identifier, normally the service's name.
    public let identifier: String

    public init(identifier: String) {
        self.identifier = identifier
    }

    public func append(_ line: String, source: String, priority: LogPriority) {
        let fields = [
            "MESSAGE=\(line)", "PRIORITY=\(priority.rawValue)", "SYSLOG_IDENTIFIER=\(identifier)",
            "AUTOMATE_SOURCE=\(source)",
        ]
        var pointers = fields.map { strdup($0) }
        defer { for p in pointers { free(p) } }
        pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { base in
                _ = automate_journal_send(base, Int32(buffer.count))
            }
        }
    }

    /// True when stderr is connected to the journal (`JOURNAL_STREAM` names stderr's device and inode),
    /// as it is for a service started by systemd with the default `StandardError=journal`.
    public static func standardErrorIsJournal(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let stream = environment["JOURNAL_STREAM"] else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
