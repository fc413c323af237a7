/// What goes wrong in the kit, with a code callers can match and a message that names what failed (a
/// sidecar, an object, a path) and what to do.
public struct KitError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case configuration, invalidArgument, notFound, alreadyExists, failed, cancelled, sidecarLost }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        /// The environment does not configure the kit (gateway, run directory, data folder).
        public static let configuration = Code(.configuration)
        public static let invalidArgument = Code(.invalidArgument)
        /// A backup, an object or a path is not there.
        public static let notFound = Code(.notFound)
        public static let alreadyExists = Code(.alreadyExists)
        /// The work failed; the message says where.
        public static let failed = Code(.failed)
        /// The work was cancelled (and the sidecars' work with it).
        public static let cancelled = Code(.cancelled)
        /// A sidecar lost the operation (it restarted, or died while it worked): fails at once, naming it.
        public static let sidecarLost = Code(.sidecarLost)
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

    /// Equal when code and message are (where they were raised does not matter).
    public static func == (a: KitError, b: KitError) -> Bool { a.code == b.code && a.message == b.message }

    public static func configuration(_ message: String, file: String = #fileID, line: Int = #line) -> KitError {
        KitError(.configuration, message, file: file, line: line)
    }
    public static func invalidArgument(_ message: String, file: String = #fileID, line: Int = #line) -> KitError {
        KitError(.invalidArgument, message, file: file, line: line)
    }
    public static func notFound(_ message: String, file: String = #fileID, line: Int = #line) -> KitError {
        KitError(.notFound, message, file: file, line: line)
    }
    public static func alreadyExists(_ message: String, file: String = #fileID, line: Int = #line) -> KitError {
        KitError(.alreadyExists, message, file: file, line: line)
    }
    public static func failed(_ message: String, file: String = #fileID, line: Int = #line) -> KitError {
        KitError(.failed, message, file: file, line: line)
    }
    public static func cancelled(_ message: String, file: String = #fileID, line: Int = #line) -> KitError {
        KitError(.cancelled, message, file: file, line: line)
    }
}
