import AutomateErrors

/// An error of the data tools (child tools, zstd, libpq), with a code callers can match and a message
/// that names what failed and where.
public typealias DataToolsError = CodedError<DataToolsErrorCode>

/// What kind of failure a ``DataToolsError`` is.
public struct DataToolsErrorCode: ErrorCode {
    private enum Value: String { case toolMissing, spawnFailed, toolFailed, io, compression, database, cancelled
        case malformedArchive, unsupportedArchive, compressedArchive
    }
    private let value: Value
    private init(_ value: Value) { self.value = value }
    /// The tool's executable does not exist or cannot be executed.
    public static let toolMissing = DataToolsErrorCode(.toolMissing)
    /// The tool could not be started (fork, pipes, exec).
    public static let spawnFailed = DataToolsErrorCode(.spawnFailed)
    /// The tool exited non-zero or was killed by a signal nobody asked for.
    public static let toolFailed = DataToolsErrorCode(.toolFailed)
    /// Reading from or writing to the tool failed.
    public static let io = DataToolsErrorCode(.io)
    /// zstd refused the data (corrupt, truncated) or could not allocate.
    public static let compression = DataToolsErrorCode(.compression)
    /// PostgreSQL refused a connection or a statement (`sqlState` says which, when it answered).
    public static let database = DataToolsErrorCode(.database)
    /// The work was cancelled (its tools were killed on purpose).
    public static let cancelled = DataToolsErrorCode(.cancelled)
    /// A pg_dump custom-format archive is truncated or corrupt (``CodedError/detail`` holds the byte offset).
    public static let malformedArchive = DataToolsErrorCode(.malformedArchive)
    /// A pg_dump custom-format archive of a version (or format) this code cannot read.
    public static let unsupportedArchive = DataToolsErrorCode(.unsupportedArchive)
    /// A pg_dump custom-format archive whose data is compressed (only `-Z0` archives can be read as they stream).
    public static let compressedArchive = DataToolsErrorCode(.compressedArchive)
    public var description: String { value.rawValue }
}

extension CodedError where Code == DataToolsErrorCode {
    /// A database error with PostgreSQL's SQLSTATE (kept in ``CodedError/detail``).
    public init(_ code: Code, _ message: String, sqlState: String?, file: String = #fileID, line: Int = #line) {
        self.init(code, message, detail: sqlState, file: file, line: line)
    }

    /// PostgreSQL's SQLSTATE for `.database` errors of a statement (for example `23505`), else nil.
    public var sqlState: String? { detail }

    /// Where in a pg_dump archive the field that failed starts (`.malformedArchive`, `.unsupportedArchive`,
    /// `.compressedArchive`), else nil.
    public var archiveOffset: Int64? {
        code == .malformedArchive || code == .unsupportedArchive || code == .compressedArchive ? detail.flatMap { Int64($0) } : nil
    }
}
