import AutomateErrors

/// An error of the supervisor, with a code callers can match and a message that says what to do.
public typealias SupervisorError = CodedError<SupervisorErrorCode>

/// What kind of failure a ``SupervisorError`` is.
public struct SupervisorErrorCode: ErrorCode {
    private enum Value: String { case filesystem, hookFailed, alreadyRunning, notRunning, unknownService, invalidManifests, userSetup, serviceBusy }
    private let value: Value
    private init(_ value: Value) { self.value = value }
    /// A folder or file could not be made or read.
    public static let filesystem = SupervisorErrorCode(.filesystem)
    /// A lifecycle hook failed or timed out.
    public static let hookFailed = SupervisorErrorCode(.hookFailed)
    /// Another supervisor already runs this home.
    public static let alreadyRunning = SupervisorErrorCode(.alreadyRunning)
    /// No supervisor runs this home.
    public static let notRunning = SupervisorErrorCode(.notRunning)
    /// No service of that name.
    public static let unknownService = SupervisorErrorCode(.unknownService)
    /// The manifests do not validate.
    public static let invalidManifests = SupervisorErrorCode(.invalidManifests)
    /// The service user could not be found or made.
    public static let userSetup = SupervisorErrorCode(.userSetup)
    /// The service runs where the request needs it stopped or held.
    public static let serviceBusy = SupervisorErrorCode(.serviceBusy)
    public var description: String { value.rawValue }
}
