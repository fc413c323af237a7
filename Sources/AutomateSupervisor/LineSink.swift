/// How bad a log line is (syslog's levels, as journald uses them).
public enum LogPriority: Int32, Sendable {
    case error = 3
    case warning = 4
    case notice = 5
    case info = 6
    case debug = 7
}

/// Where a service's lines go: its log file, or the journal under its name.
public protocol LineSink: Sendable {
    /// Records one line that came from `source` (`stdout`, `stderr`, `hook:<name>`, `supervisor`).
    func append(_ line: String, source: String, priority: LogPriority)
}

extension LineSink {
    /// Records a line with the priority its source implies: stderr is a warning, the rest is info.
    public func append(_ line: String, source: String) {
        append(line, source: source, priority: source == "stderr" ? .warning : .info)
    }
}

extension LogFile: LineSink {
    public func append(_ line: String, source: String, priority: LogPriority) {
        append(line, source: priority == .error ? source + ":error" : source)
    }
}

/// Where the supervisor sends its services' output.
public enum LogTarget: String, Sendable, CaseIterable {
    /// `<home>/logs/<service>.log`.
    case file
    /// journald, with `SYSLOG_IDENTIFIER=<service>` (`journalctl -t <service>`).
    case journal
}
