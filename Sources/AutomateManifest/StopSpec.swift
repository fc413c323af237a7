/// The `[stop]` table: how the supervisor stops a service.
public struct StopSpec: Sendable, Equatable {
    /// Default stop signal: `SIGTERM`.
    public static let defaultSignalName = "SIGTERM"
    /// Default time between the stop signal and `SIGKILL`: 30 seconds.
    public static let defaultTimeout: Duration = .seconds(30)

    /// The canonical signal name, with the `SIG` prefix (`SIGTERM`).
    public var signalName: String
    /// The signal number on this platform (15 for `SIGTERM` on Linux).
    public var signal: Int32
    /// How long to wait after the stop signal before sending `SIGKILL`. Default 30s.
    public var timeout: Duration

    /// Creates a stop spec from a signal name (`"SIGTERM"` or `"TERM"`); returns nil for an unsupported name.
    public init?(signalName: String = StopSpec.defaultSignalName, timeout: Duration = StopSpec.defaultTimeout) {
        guard let (name, number) = StopSignal.lookup(signalName) else { return nil }
        self.signalName = name
        self.signal = number
        self.timeout = timeout
    }

    /// The default: `SIGTERM`, 30 seconds.
    public static let `default` = StopSpec()!
}
