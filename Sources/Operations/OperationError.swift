import AutomateErrors

/// An error of the operation layer, with a code callers can match and a message naming the operation.
public typealias OperationError = CodedError<OperationErrorCode>

/// What kind of failure a ``OperationError`` is.
public struct OperationErrorCode: ErrorCode {
    private enum Value: String { case notFound, alreadyExists }
    private let value: Value
    private init(_ value: Value) { self.value = value }
    /// No operation with that id is known here (it never ran, or this process restarted since).
    public static let notFound = OperationErrorCode(.notFound)
    /// An operation with that id exists already.
    public static let alreadyExists = OperationErrorCode(.alreadyExists)
    public var description: String { value.rawValue }
}
