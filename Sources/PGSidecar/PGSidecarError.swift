import AutomateErrors

/// An error of the pg-sidecar's own (tools, zstd and libpq report `DataToolsError`), with a code callers
/// can match and a message naming what failed and what to do.
public typealias PGSidecarError = CodedError<PGSidecarErrorCode>

/// What kind of failure a ``PGSidecarError`` is.
public struct PGSidecarErrorCode: ErrorCode {
    private enum Value: String { case configuration, integrity, missing, server }
    private let value: Value
    private init(_ value: Value) { self.value = value }
    /// The environment does not configure the sidecar (socket, S3 endpoint).
    public static let configuration = PGSidecarErrorCode(.configuration)
    /// A dump does not match what the backup recorded (sha256, row counts); nothing was replaced.
    public static let integrity = PGSidecarErrorCode(.integrity)
    /// An object the backup lists is not in the repository.
    public static let missing = PGSidecarErrorCode(.missing)
    /// The server cannot do what was asked as it is set up (archiving off), or a tool said something
    /// unexpected (pg_basebackup's WAL positions).
    public static let server = PGSidecarErrorCode(.server)
    public var description: String { value.rawValue }
}
