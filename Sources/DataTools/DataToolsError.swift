/// An error of the data tools (child tools, zstd, libpq), with a code callers can match and a message
/// that names what failed and where.
public struct DataToolsError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case toolMissing, spawnFailed, toolFailed, io, compression, database, cancelled }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        /// The tool's executable does not exist or cannot be executed.
        public static let toolMissing = Code(.toolMissing)
        /// The tool could not be started (fork, pipes, exec).
        public static let spawnFailed = Code(.spawnFailed)
        /// The tool exited non-zero or was killed by a signal nobody asked for.
        public static let toolFailed = Code(.toolFailed)
        /// Reading from or writing to the tool failed.
        public static let io = Code(.io)
        /// zstd refused the data (corrupt, truncated) or could not allocate.
        public static let compression = Code(.compression)
        /// PostgreSQL refused a connection or a statement (`sqlState` says which, when it answered).
        public static let database = Code(.database)
        /// The work was cancelled (its tools were killed on purpose).
        public static let cancelled = Code(.cancelled)
        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    /// PostgreSQL's SQLSTATE for `.database` errors of a statement (for example `23505`), else nil.
    public let sqlState: String?
    /// Where the error was raised.
    public let file: String
    public let line: Int

    public init(_ code: Code, _ message: String, sqlState: String? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.file = file
        self.line = line
    }

    public var description: String { message }
}
