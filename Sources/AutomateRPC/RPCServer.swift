import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf

/// Serves registered methods on a Unix-domain socket.
///
/// Register every method, then `start()`. Each connection multiplexes many concurrent calls; each
/// call runs its handler in its own task, which is cancelled when the client cancels, disconnects,
/// or the call's deadline passes. `shutdown()` stops accepting, lets calls in flight finish for a
/// grace period, cancels the rest, closes connections and removes the socket file.
public final class RPCServer: Sendable {
    /// Where and how to listen.
    public struct Configuration: Sendable {
        /// The socket's path, conventionally `<run dir>/<service>.sock`. Its directory is created if
        /// missing and forced to mode 0700 (a sticky shared one is kept); the socket gets mode 0660:
        /// its own user and group may connect, and the peer policy decides what each may call.
        public var socketPath: String
        /// The largest frame accepted, in bytes; a peer sending more is disconnected. Default 16 MiB.
        public var maxFrameSize: Int = 16 << 20
        /// How long `shutdown()` lets calls in flight finish before cancelling them. Default 5 s.
        public var shutdownGracePeriod: Duration = .seconds(5)
        /// A connection is closed when it holds a partial frame for this long, or when nothing
        /// arrives on it for this long while none of its calls is in flight (a running handler or a
        /// long server stream keeps it open). One line is logged per closed connection, at most
        /// one per second for the whole server (with a count of the others). Nil or zero: never.
        /// Default 30 s.
        public var idleTimeout: Duration? = .seconds(30)
        /// Run handlers on their connection's event loop instead of Swift's concurrency pool.
        ///
        /// Saves two thread hops per call (lower latency, higher throughput), but a handler that
        /// blocks (synchronous file I/O, hashing, waiting on a lock) then stalls every connection on
        /// that loop, including the delivery of cancellations and deadlines. Only for handlers that
        /// never block; ignored before macOS 15. Default false.
        public var runHandlersOnEventLoop: Bool = false
        /// The event loops serving connections. Default: NIO's shared singleton group.
        public var eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
        /// Who may call what, checked against each connection's peer uid (`SO_PEERCRED`). Nil: the
        /// policy the supervisor put in `AUTOMATE_RPC_PEERS`, or without one this process's own user
        /// and root (``RPCPeerPolicy/ownerAndRoot``). A refused call gets `PERMISSION_DENIED`.
        public var peers: RPCPeerPolicy? = nil
        /// Method-name prefixes only trusted callers may call; clients (services that depend on this
        /// one) get `PERMISSION_DENIED`. Default: the backup contract, which only the deployment-service
        /// (and the operators) may drive.
        public var trustedOnlyMethods: [String] = [RPCServer.backupContractPrefix]

        /// A configuration with defaults for everything but the socket path.
        public init(socketPath: String) {
            self.socketPath = socketPath
        }
    }

    private struct State {
        var methods: [String: RPCServerMethod] = [:]
        var serverChannel: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// Connections accepted so far; each is numbered in log lines.
        var accepted: UInt64 = 0
        var started = false
        var stopped = false
    }

    /// The method-name prefix of the backup contract (`BackupService` in backup_contract.proto).
    public static let backupContractPrefix = "automate.backup.v1.BackupService/"

    /// The configuration the server was made with.
    public let configuration: Configuration
    private let logger: Logger
    private let state = LockedValue(State())
    /// Malformed frames and requests, logged at most once per second for all connections.
    private let malformedLog: RPCRateLimitedLog
    /// Connections closed for idleness or a partial frame, logged at most once per second.
    private let idleLog: RPCRateLimitedLog
    /// Calls refused by the peer policy, logged at most once per second.
    private let deniedLog: RPCRateLimitedLog
    /// The policy in force, fixed by `start()`.
    private let policy = LockedValue<RPCPeerPolicy?>(nil)

    /// Creates a server; nothing listens until `start()`.
    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "rpc.socket"] = "\(configuration.socketPath)"
        self.logger = logger
        let loop = configuration.eventLoopGroup.next()
        self.malformedLog = RPCRateLimitedLog(
            logger: logger, level: .warning, subject: "malformed RPC input dropped", eventLoop: loop)
        self.idleLog = RPCRateLimitedLog(
            logger: logger, level: .info, subject: "idle RPC connections closed", eventLoop: loop)
        self.deniedLog = RPCRateLimitedLog(
            logger: logger, level: .warning, subject: "RPC calls refused (PERMISSION_DENIED)", eventLoop: loop)
    }

    /// Registers a unary method by name: one request, one response. Register before `start()`; a
    /// method registered later serves only connections accepted after it. Registering a name again
    /// replaces the earlier handler.
    ///
    /// The low-level layer under `register(_:_:)`: prefer the typed descriptors generated from the
    /// `.proto` service blocks, which fix the name and both message types in one place.
    public func registerUnary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String,
        _ handler: @escaping @Sendable (Request, RPCCallContext) async throws -> Response
    ) {
        state.withLockedValue { $0.methods[method] = .unary(handler) }
    }

    /// Registers a server-streaming method by name: one request, any number of responses sent
    /// through the writer, in order, then the status (OK when the handler returns, or the error it
    /// throws).
    ///
    /// The low-level layer under `register(_:_:)`: prefer the typed descriptors generated from the
    /// `.proto` service blocks.
    public func registerServerStream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String,
        _ handler: @escaping @Sendable (Request, RPCResponseWriter<Response>, RPCCallContext) async throws -> Void
    ) {
        state.withLockedValue { $0.methods[method] = .serverStream(handler) }
    }

    /// The methods registered so far.
    public var registeredMethods: [String] {
        state.withLockedValue { $0.methods.keys.sorted() }
    }

    /// Prepares the run directory, claims the socket path and starts accepting connections.
    ///
    /// Throws `RPCServerError.socketInUse` if another live process serves the path; a stale socket
    /// left by a dead process is replaced.
    public func start() async throws {
        let path = configuration.socketPath
        try state.withLockedValue { state in
            guard !state.started else { throw RPCServerError.alreadyStarted(path: path) }
            state.started = true
        }
        let peers = try configuration.peers ?? RPCPeerPolicy.fromEnvironment(RPCPeerCredentials.processEnvironment())
        policy.withLockedValue { $0 = peers }
        try RPCSocketFile.prepareRunDirectory(forSocketAt: path)
        try RPCSocketFile.claim(path)

        let maxFrameSize = configuration.maxFrameSize
        let bootstrap = ServerBootstrap(group: configuration.eventLoopGroup)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [self] channel in
                let (settings, number) = self.acceptConnection(channel)
                return RPCPeerCredentials.of(channel).flatMapThrowing { peer in
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RPCFrameDecoder(maxFrameSize: maxFrameSize)),
                        RPCServerConnectionHandler(
                            settings: settings, peer: peer, connectionNumber: number, eventLoop: channel.eventLoop)
                    )
                }
            }
        // Bound and restricted under a hidden name, then renamed into place: the socket appears at `path`
        // only once it listens with its final mode (a client that waits for the file never meets a
        // refused connection, nor a socket anyone may still reach).
        let bound = RPCSocketFile.stagingPath(for: path) ?? path
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: bound, cleanupExistingSocketFile: false).get()
        } catch {
            throw RPCServerError.bindFailed(path: path, reason: "\(error)")
        }
        do {
            try RPCSocketFile.restrict(bound)
            if bound != path { try RPCSocketFile.publish(bound, at: path) }
        } catch {
            try? await channel.close()
            RPCSocketFile.remove(bound)
            RPCSocketFile.remove(path)
            throw error
        }
        let stopped = state.withLockedValue { state in
            state.serverChannel = channel
            return state.stopped
        }
        if stopped {
            try? await channel.close()
            RPCSocketFile.remove(path)
            return
        }
        logger.info("RPC server listening")
    }

    /// Stops accepting, lets calls in flight finish for `shutdownGracePeriod`, cancels the rest
    /// (their clients get CANCELLED), closes every connection and removes the socket file.
    public func shutdown() async {
        let (serverChannel, connections) = state.withLockedValue { state in
            state.stopped = true
            let result = (state.serverChannel, Array(state.connections.values))
            state.serverChannel = nil
            return result
        }
        guard let serverChannel else { return }
        try? await serverChannel.close()
        let grace = TimeAmount(configuration.shutdownGracePeriod)
        await withTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask {
                    let drained = connection.eventLoop.flatSubmit {
                        do {
                            let handler = try connection.pipeline.syncOperations.handler(
                                type: RPCServerConnectionHandler.self)
                            return handler.drain(grace: grace)
                        } catch {
                            return connection.close()
                        }
                    }
                    try? await drained.get()
                    try? await connection.closeFuture.get()
                }
            }
        }
        RPCSocketFile.remove(configuration.socketPath)
        malformedLog.flush()
        idleLog.flush()
        deniedLog.flush()
        logger.info("RPC server stopped")
    }

    /// Records a new connection (so shutdown can close it) and returns what it needs: the methods
    /// it serves, its limits and logs, and its number.
    private func acceptConnection(_ channel: any Channel) -> (RPCServerConnectionHandler.Settings, UInt64) {
        let id = ObjectIdentifier(channel)
        let (methods, number, stopped) = state.withLockedValue { state in
            if !state.stopped { state.connections[id] = channel }
            state.accepted += 1
            return (state.methods, state.accepted, state.stopped)
        }
        if stopped {
            channel.close(promise: nil)
        } else {
            channel.closeFuture.whenComplete { [state] _ in
                state.withLockedValue { _ = $0.connections.removeValue(forKey: id) }
            }
        }
        let settings = RPCServerConnectionHandler.Settings(
            methods: methods, logger: logger, maxFrameSize: configuration.maxFrameSize,
            runHandlersOnEventLoop: configuration.runHandlersOnEventLoop,
            idleTimeout: configuration.idleTimeout.flatMap { $0 > .zero ? TimeAmount($0) : nil },
            malformedLog: malformedLog, idleLog: idleLog,
            policy: policy.withLockedValue { $0 } ?? .ownerAndRoot, trustedOnlyMethods: configuration.trustedOnlyMethods,
            deniedLog: deniedLog)
        return (settings, number)
    }
}
