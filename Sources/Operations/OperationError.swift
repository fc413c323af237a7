/// An error of the operation layer, with a code callers can match and a message naming the operation.
public struct OperationError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case notFound, alreadyExists, cancelled }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        /// No operation with that id is known here (it never ran, or this process restarted since).
        public static let notFound = Code(.notFound)
        /// An operation with that id exists already.
        public static let alreadyExists = Code(.alreadyExists)
        /// The work was cancelled before it could start.
        public static let cancelled = Code(.cancelled)
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
