/// A module's error codes: a struct wrapping a private enum, so that a module can add codes without
/// breaking the callers that match on them (see `SupervisorErrorCode` for the shape).
public protocol ErrorCode: Hashable, Sendable, CustomStringConvertible {}

/// The one error shape of the project's modules: a code callers match, a message that names what went
/// wrong (the service, file, object or operation) and what to do, and where the error was raised.
///
/// Each module names its own: `public typealias KitError = CodedError<KitErrorCode>`, then
/// `throw KitError(.sidecarLost, "pg-sidecar-service lost operation ...")`.
public struct CodedError<Code: ErrorCode>: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure.
    public let code: Code
    /// What went wrong and what to do, for people.
    public let message: String
    /// Extra machine-readable detail some codes carry (for example PostgreSQL's SQLSTATE); nil when none.
    public let detail: String?
    /// Where the error was raised.
    public let file: String
    public let line: Int

    public init(_ code: Code, _ message: String, detail: String? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.detail = detail
        self.file = file
        self.line = line
    }

    public var description: String { message }

    /// Equal when code, message and detail are (where they were raised does not matter).
    public static func == (a: Self, b: Self) -> Bool { a.code == b.code && a.message == b.message && a.detail == b.detail }
}
