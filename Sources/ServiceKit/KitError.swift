import AutomateErrors

/// What goes wrong in the kit, with a code callers can match and a message that names what failed (a
/// sidecar, an object, a path) and what to do.
public typealias KitError = CodedError<KitErrorCode>

/// What kind of failure a ``KitError`` is.
public struct KitErrorCode: ErrorCode {
    private enum Value: String { case configuration, invalidArgument, notFound, alreadyExists, failed, cancelled, sidecarLost }
    private let value: Value
    private init(_ value: Value) { self.value = value }
    /// The environment does not configure the kit (gateway, run directory, data folder).
    public static let configuration = KitErrorCode(.configuration)
    public static let invalidArgument = KitErrorCode(.invalidArgument)
    /// A backup, an object or a path is not there.
    public static let notFound = KitErrorCode(.notFound)
    public static let alreadyExists = KitErrorCode(.alreadyExists)
    /// The work failed; the message says where.
    public static let failed = KitErrorCode(.failed)
    /// The work was cancelled (and the sidecars' work with it).
    public static let cancelled = KitErrorCode(.cancelled)
    /// A sidecar lost the operation (it restarted, or died while it worked): fails at once, naming it.
    public static let sidecarLost = KitErrorCode(.sidecarLost)
    public var description: String { value.rawValue }
}
