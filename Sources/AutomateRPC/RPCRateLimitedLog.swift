import Logging
import NIOCore

/// Logs one kind of connection trouble (malformed input, idle connections closed) for a whole server at
/// most once per `interval`, however many connections cause it: the first event of a quiet period is
/// logged at once with its detail; later ones are counted, and one summary line after the interval
/// says how many were held back, from how many connections, and the latest detail.
///
/// A peer sending garbage on 10,000 connections therefore costs a handful of lines, not 10,000.
/// Thread-safe: connection handlers on any event loop report here; the state is behind a lock.
final class RPCRateLimitedLog: Sendable {
    private struct State {
        var lastLine: NIODeadline?
        var heldBack = 0
        var heldBackConnections: Set<UInt64> = []
        var latestDetail = ""
        var summary: Scheduled<Void>?
    }

    private let logger: Logger
    private let level: Logger.Level
    /// What happened, as a plural noun phrase: "malformed frames dropped".
    private let subject: String
    private let interval: TimeAmount
    private let eventLoop: any EventLoop
    private let state = LockedValue(State())

    /// - Parameters:
    ///   - subject: what is counted, as a plural noun phrase ("malformed frames dropped").
    ///   - eventLoop: where the summary line of held-back events is scheduled.
    init(logger: Logger, level: Logger.Level, subject: String, interval: TimeAmount = .seconds(1), eventLoop: any EventLoop) {
        self.logger = logger
        self.level = level
        self.subject = subject
        self.interval = interval
        self.eventLoop = eventLoop
    }

    /// Records one event on connection `connection`, which has now had `countOnConnection` of them.
    func record(connection: UInt64, countOnConnection: Int, _ detail: String) {
        let now = NIODeadline.now()
        let logNow: Bool = state.withLockedValue { state in
            if let last = state.lastLine, now - last < interval {
                state.heldBack += 1
                state.heldBackConnections.insert(connection)
                state.latestDetail = detail
                if state.summary == nil {
                    state.summary = eventLoop.scheduleTask(deadline: last + interval) { [self] in
                        self.logSummary()
                    }
                }
                return false
            }
            state.lastLine = now
            return true
        }
        if logNow {
            let count = countOnConnection == 1 ? "" : " (\(countOnConnection) on this connection so far)"
            logger.log(level: level, "\(subject): connection #\(connection)\(count): \(detail)")
        }
    }

    /// Logs the summary of held-back events now, if any (the server calls this when it stops).
    func flush() {
        let summary = state.withLockedValue { state in
            let scheduled = state.summary
            state.summary = nil
            return scheduled
        }
        summary?.cancel()
        logSummary()
    }

    private func logSummary() {
        let line: (count: Int, connections: Int, detail: String)? = state.withLockedValue { state in
            state.summary = nil
            guard state.heldBack > 0 else { return nil }
            let line = (state.heldBack, state.heldBackConnections.count, state.latestDetail)
            state.heldBack = 0
            state.heldBackConnections.removeAll(keepingCapacity: false)
            state.lastLine = .now()
            return line
        }
        guard let line else { return }
        logger.log(
            level: level,
            "\(subject): \(line.count) more from \(line.connections) connection(s) since the last line (at most one line per \(Duration(interval)) is logged); latest: \(line.detail)")
    }
}
