/// An error of the pg-sidecar's own (tools, zstd and libpq report `DataToolsError`), with a code callers
/// can match and a message naming what failed and what to do.
public struct PGSidecarError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case configuration, integrity, missing }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        /// The environment does not configure the sidecar (socket, S3 endpoint).
        public static let configuration = Code(.configuration)
        /// A dump does not match what the backup recorded (sha256, row counts); nothing was replaced.
        public static let integrity = Code(.integrity)
        /// An object the backup lists is not in the repository.
        public static let missing = Code(.missing)
        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    /// Where the error was raised.
    public let file: String
    public let line: Int

    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { message }
}
