import Logging

/// What a handler knows about the call it serves.
public struct RPCCallContext: Sendable {
    /// The method name the client called.
    public let method: String
    /// The call's id on its connection (unique among the connection's calls in flight).
    public let callID: UInt64
    /// When the call's deadline passes, if the client set a timeout. The handler's task is cancelled
    /// then; long-running handlers should check `Task.isCancelled` or use cancellable awaits.
    public let deadline: ContinuousClock.Instant?
    /// Who is calling, by the server's peer policy: a handler keeps a client to its own service's data.
    public let caller: RPCCaller
    /// The calling process as the kernel reports it (nil where the platform cannot tell).
    public let peer: RPCPeerCredentials?
    /// The server's logger, with `rpc.method` and `rpc.call_id` metadata.
    public var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "rpc.method"] = "\(method)"
        logger[metadataKey: "rpc.call_id"] = "\(callID)"
        return logger
    }

    /// Kept without the call's metadata, which is added when `logger` is read: most calls never log,
    /// and building metadata for each would cost every call an allocation.
    private let baseLogger: Logger

    /// Creates a context (servers make these; tests of handlers may too).
    public init(
        method: String, callID: UInt64, deadline: ContinuousClock.Instant?, logger: Logger,
        caller: RPCCaller = .trusted, peer: RPCPeerCredentials? = nil
    ) {
        self.method = method
        self.callID = callID
        self.deadline = deadline
        self.caller = caller
        self.peer = peer
        self.baseLogger = logger
    }
}
