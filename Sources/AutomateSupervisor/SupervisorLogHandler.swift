import Foundation
import Logging

/// swift-log handler for the supervisor's own log: `<home>/logs/supervisor.log`, and stderr when it runs
/// in the foreground.
public struct SupervisorLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let file: (any LineSink)?
    private let toStandardError: Bool

    public init(file: (any LineSink)?, toStandardError: Bool) {
        self.file = file
        self.toStandardError = toStandardError
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        let metadata = event.metadata
        var text = "\(message)"
        let merged = self.metadata.merging(metadata ?? [:]) { $1 }
        if !merged.isEmpty {
            text += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        let priority: LogPriority = switch level {
        case .trace, .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error, .critical: .error
        }
        file?.append(text, source: level.rawValue, priority: priority)
        if toStandardError {
            FileHandle.standardError.write(Data("\(LogFile.timestamp()) \(level.rawValue): \(text)\n".utf8))
        }
    }
}
