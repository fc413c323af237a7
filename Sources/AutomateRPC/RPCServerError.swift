/// Why an `RPCServer` could not start. Each case names the path involved and says what to do.
public enum RPCServerError: Error, CustomStringConvertible, Sendable, Hashable {
    /// A live process accepts connections on the socket; stop it first, or use another socket path.
    case socketInUse(path: String)
    /// Something that is not a socket sits where the socket should go; it is left alone.
    case notASocket(path: String)
    /// The socket path is longer than a Unix-domain socket address allows.
    case socketPathTooLong(path: String, maximum: Int)
    /// The run directory could not be created or restricted to 0700.
    case runDirectory(path: String, reason: String)
    /// Binding or restricting the socket failed.
    case bindFailed(path: String, reason: String)
    /// `start()` was called twice, or after `shutdown()`.
    case alreadyStarted(path: String)

    public var description: String {
        switch self {
        case .socketInUse(let path):
            "another process is serving \(path); stop it first or configure a different socket path"
        case .notASocket(let path):
            "\(path) exists and is not a socket; remove it by hand or configure a different socket path"
        case .socketPathTooLong(let path, let maximum):
            "socket path \(path) is \(path.utf8.count) bytes, more than the \(maximum) a Unix socket allows; use a shorter run directory"
        case .runDirectory(let path, let reason):
            "cannot prepare run directory \(path) (mode 0700): \(reason)"
        case .bindFailed(let path, let reason):
            "cannot listen on \(path): \(reason)"
        case .alreadyStarted(let path):
            "the RPC server for \(path) was already started; make a new RPCServer to serve again"
        }
    }
}
