/// A failed call: a gRPC-style status code and a message meant for an operator.
///
/// Handlers throw it to end a call with that status; clients receive it for every failed call (a
/// status from the server, a deadline, a cancellation, or a lost connection).
public struct RPCError: Error, CustomStringConvertible, Sendable, Hashable {
    /// The status, numbered as gRPC does.
    public var code: RPCStatusCode
    /// What failed and, where possible, what to do about it.
    public var message: String

    /// Creates an error with a status code and a message.
    public init(_ code: RPCStatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `CODE: message`, for example `NOT_FOUND: no backup 20260302081223`.
    public var description: String {
        message.isEmpty ? code.description : "\(code): \(message)"
    }
}

extension RPCError {
    /// Maps any error thrown by a handler to the status sent to the client: an `RPCError` keeps its
    /// code, a `CancellationError` becomes CANCELLED, anything else INTERNAL with its description.
    init(mapping error: any Error) {
        switch error {
        case let error as RPCError:
            self = error
        case is CancellationError:
            self.init(.cancelled, "the call was cancelled")
        default:
            self.init(.internal, String(describing: error))
        }
    }
}
