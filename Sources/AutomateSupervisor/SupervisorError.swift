/// An error of the supervisor, with a code callers can match and a message that says what to do.
public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case filesystem, hookFailed, alreadyRunning, notRunning, unknownService, invalidManifests, userSetup }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        /// A folder or file could not be made or read.
        public static let filesystem = Code(.filesystem)
        /// A lifecycle hook failed or timed out.
        public static let hookFailed = Code(.hookFailed)
        /// Another supervisor already runs this home.
        public static let alreadyRunning = Code(.alreadyRunning)
        /// No supervisor runs this home.
        public static let notRunning = Code(.notRunning)
        /// No service of that name.
        public static let unknownService = Code(.unknownService)
        /// The manifests do not validate.
        public static let invalidManifests = Code(.invalidManifests)
        /// The service user could not be found or made.
        public static let userSetup = Code(.userSetup)
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
