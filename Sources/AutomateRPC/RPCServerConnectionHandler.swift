#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore

/// One accepted connection on the server. Everything here runs on the connection's event loop, so
/// the table of calls in flight needs no lock. Each request gets one `Task` running its handler; the
/// task hands its final frame back to the loop, which writes it and coalesces flushes.
///
/// Robustness: malformed input (a frame too large or not an envelope, a protocol violation, a
/// payload that is not the method's request type) is counted per connection and reported to the
/// server's rate-limited log; a frame-level error closes the connection. One timer per connection
/// closes it when it holds a partial frame, or sends nothing while no call is in flight, for the
/// idle timeout.
final class RPCServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = RPCEnvelope
    typealias OutboundOut = ByteBuffer

    private struct ActiveCall {
        var task: Task<Void, Never>?
        var deadlineTimer: Scheduled<Void>?
    }

    /// What the server gives each connection: its methods, limits and logs.
    struct Settings {
        var methods: [String: RPCServerMethod]
        var logger: Logger
        var maxFrameSize: Int
        var runHandlersOnEventLoop: Bool
        /// Nil: connections are never closed for inactivity.
        var idleTimeout: TimeAmount?
        var malformedLog: RPCRateLimitedLog
        var idleLog: RPCRateLimitedLog
        /// Who may call what.
        var policy: RPCPeerPolicy
        /// Method-name prefixes clients may not call.
        var trustedOnlyMethods: [String]
        /// Refused calls, rate-limited for the whole server.
        var deniedLog: RPCRateLimitedLog
    }

    private let methods: [String: RPCServerMethod]
    private let logger: Logger
    /// This connection's number on its server, for log lines.
    private let connectionNumber: UInt64
    private let malformedLog: RPCRateLimitedLog
    private let idleLog: RPCRateLimitedLog
    private let trustedOnlyMethods: [String]
    private let deniedLog: RPCRateLimitedLog
    /// The connected process (nil where the platform cannot tell: then every call is refused).
    private let peer: RPCPeerCredentials?
    /// Who the peer is to this server (nil: a stranger, refused).
    private let caller: RPCCaller?
    /// Calls refused on this connection.
    private var deniedCount = 0
    /// Malformed frames and requests seen on this connection.
    private var malformedCount = 0
    /// Set once the connection is being closed for malformed input: later errors are its echoes.
    private var closingForMalformedInput = false
    private let idleTimeout: TimeAmount?
    private var idleTimer: Scheduled<Void>?
    /// When bytes last arrived or the last call in flight ended.
    private var lastActivity = NIODeadline.now()
    /// When the first bytes of the frame still incomplete arrived, if one is.
    private var partialFrameSince: NIODeadline?
    private let eventLoop: any EventLoop
    private let maxFrameSize: Int
    /// An `EventLoopTaskExecutor` for this connection's loop when handlers run on it, else nil.
    private let taskExecutor: (any Sendable)?
    private var context: ChannelHandlerContext?
    private var calls: [UInt64: ActiveCall] = [:]
    /// Inside channelRead..channelReadComplete or a batch of completions: writes are flushed at its end.
    private var inReadBurst = false
    /// Final frames of handlers that finished off the loop, handed over in batches.
    private var completions: RPCLoopInbox<RPCCallOutcome>!
    private var flushScheduled = false
    private var writabilityWaiters: [EventLoopPromise<Void>] = []
    private var draining = false
    private var drainTimer: Scheduled<Void>?

    init(settings: Settings, peer: RPCPeerCredentials?, connectionNumber: UInt64, eventLoop: any EventLoop) {
        if settings.runHandlersOnEventLoop, #available(macOS 15.0, iOS 18.0, tvOS 18.0, watchOS 11.0, *) {
            self.taskExecutor = EventLoopTaskExecutor(eventLoop)
        } else {
            self.taskExecutor = nil
        }
        self.methods = settings.methods
        self.maxFrameSize = settings.maxFrameSize
        self.logger = settings.logger
        self.connectionNumber = connectionNumber
        self.malformedLog = settings.malformedLog
        self.idleLog = settings.idleLog
        self.trustedOnlyMethods = settings.trustedOnlyMethods
        self.deniedLog = settings.deniedLog
        self.peer = peer
        self.caller = peer.flatMap { settings.policy.caller(uid: $0.uid) }
        self.idleTimeout = settings.idleTimeout
        self.eventLoop = eventLoop
        self.completions = RPCLoopInbox(eventLoop: eventLoop) { [weak self] batch in
            self?.callsFinished(batch)
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let idleTimeout {
            lastActivity = .now()
            scheduleIdleCheck(at: lastActivity + idleTimeout)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        self.context = nil
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBurst = true
        let envelope = unwrapInboundIn(data)
        if envelope.cancel {
            finishEarly(callID: envelope.callID, RPCError(.cancelled, "cancelled by the client"))
            return
        }
        guard envelope.callID != 0 else {
            closeOnMalformedInput(context: context, "protocol error: request with call_id 0 (call ids start at 1)")
            return
        }
        guard calls[envelope.callID] == nil else {
            closeOnMalformedInput(context: context, "protocol error: call_id \(envelope.callID) is already in flight")
            return
        }
        if draining {
            writeStatus(callID: envelope.callID, RPCError(.unavailable, "the server is shutting down; retry after it restarts"))
            return
        }
        guard let method = methods[envelope.method] else {
            writeStatus(callID: envelope.callID, RPCError(.unimplemented, "unknown method '\(envelope.method)'"))
            return
        }
        guard let caller, allows(caller, envelope.method) else {
            let who = peer?.description ?? "a caller whose uid the platform does not report"
            deniedCount += 1
            deniedLog.record(connection: connectionNumber, countOnConnection: deniedCount, "\(envelope.method) refused for \(who)")
            writeStatus(
                callID: envelope.callID,
                RPCError(.permissionDenied, "\(envelope.method) is not allowed for \(who): the manifests do not let this service's user call it"))
            return
        }
        startCall(context: context, envelope: envelope, method: method)
    }

    private func allows(_ caller: RPCCaller, _ method: String) -> Bool {
        caller == .trusted || !trustedOnlyMethods.contains { method.hasPrefix($0) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        if idleTimeout != nil {
            lastActivity = .now()
        }
        context.flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { wakeWritabilityWaiters() }
        context.fireChannelWritabilityChanged()
    }

    /// Resumes every handler waiting for room to write.
    private func wakeWritabilityWaiters() {
        let waiters = writabilityWaiters
        writabilityWaiters.removeAll()
        for waiter in waiters { waiter.succeed() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event as? RPCFramingEvent {
        case .partialFrameStarted:
            partialFrameSince = .now()
        case .partialFrameCompleted:
            partialFrameSince = nil
        case nil:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        let calls = self.calls
        self.calls.removeAll()
        for call in calls.values {
            call.deadlineTimer?.cancel()
            call.task?.cancel()
        }
        failWritabilityWaiters()
        drainTimer?.cancel()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closingForMalformedInput {
            return  // the decoder rejecting what followed the bad frame on the same read
        }
        if let malformed = Self.malformedInputDescription(error) {
            closeOnMalformedInput(context: context, malformed)
            return
        }
        if let error = error as? IOError, [ECONNRESET, EPIPE].contains(error.errnoCode) {
            logger.debug("RPC connection reset by the client: \(error)")
        } else {
            logger.error("closing RPC connection: \(error)")
        }
        context.close(promise: nil)
    }

    // MARK: calls

    private func startCall(context: ChannelHandlerContext, envelope: RPCEnvelope, method: RPCServerMethod) {
        let callID = envelope.callID
        var deadline: ContinuousClock.Instant?
        var timer: Scheduled<Void>?
        if envelope.timeoutMicros > 0 {
            // Capped at 2^50 µs (35 years) so that converting to nanoseconds cannot overflow.
            let micros = Int64(min(envelope.timeoutMicros, 1 << 50))
            deadline = ContinuousClock.now.advanced(by: .microseconds(micros))
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: .microseconds(micros)) {
                bound.value.finishEarly(
                    callID: callID,
                    RPCError(.deadlineExceeded, "\(envelope.method) did not finish within its deadline of \(Duration.microseconds(micros))"))
            }
        }
        let callContext = RPCCallContext(
            method: envelope.method, callID: callID, deadline: deadline, logger: logger, caller: caller ?? .trusted, peer: peer)
        let connection = NIOLoopBound(self, eventLoop: context.eventLoop)
        let stream = RPCServerCallStream(callID: callID, connection: connection)
        let completions = self.completions!
        let payload = envelope.payload
        calls[callID] = ActiveCall(task: nil, deadlineTimer: timer)
        // The task starts later (tasks are always enqueued), so it cannot finish before `task` is stored.
        let operation: @Sendable () async -> Void = {
            let outcome = await runHandler(method, payload, callContext, stream)
            if connection.eventLoop.inEventLoop {
                connection.value.callFinished(outcome)
            } else {
                completions.submit(outcome)
            }
        }
        let task: Task<Void, Never>
        if #available(macOS 15.0, iOS 18.0, tvOS 18.0, watchOS 11.0, *), let executor = taskExecutor as? EventLoopTaskExecutor {
            task = Task(executorPreference: executor, operation: operation)
        } else {
            task = Task(operation: operation)
        }
        calls[callID]?.task = task
    }

    /// A batch of handlers finished: write their frames, then flush once.
    private func callsFinished(_ batch: [RPCCallOutcome]) {
        inReadBurst = true
        for outcome in batch {
            callFinished(outcome)
        }
        inReadBurst = false
        context?.flush()
    }

    /// The handler's task is done: send its final frame unless the call already ended.
    private func callFinished(_ outcome: RPCCallOutcome) {
        if let reason = outcome.undecodableRequest {
            recordMalformedInput(reason)
        }
        let callID = outcome.callID
        let frame = outcome.frame
        guard let call = calls.removeValue(forKey: callID) else { return }
        call.deadlineTimer?.cancel()
        if frame.readableBytes - 4 > maxFrameSize {
            writeStatus(callID: callID, oversizedResponse(frame))
        } else {
            write(frame)
        }
        callEnded()
    }

    /// Ends a call before its handler returns (client cancel, deadline, shutdown): cancels the
    /// handler's task and sends the status now. The handler's own result is then dropped.
    private func finishEarly(callID: UInt64, _ status: RPCError) {
        guard let call = calls.removeValue(forKey: callID) else { return }
        call.deadlineTimer?.cancel()
        call.task?.cancel()
        writeStatus(callID: callID, status)
        callEnded()
    }

    /// Writes one message of a streaming call; the returned future completes when the handler may
    /// send the next one (at once, or when the channel becomes writable again).
    func writeStreamMessage(callID: UInt64, frame: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context, calls[callID] != nil else {
            return eventLoop.makeFailedFuture(RPCError(.cancelled, "the call is over (cancelled, past its deadline, or its client went away)"))
        }
        if frame.readableBytes - 4 > maxFrameSize {
            return eventLoop.makeFailedFuture(oversizedResponse(frame))
        }
        write(frame)
        if context.channel.isWritable {
            return context.eventLoop.makeSucceededVoidFuture()
        }
        // The waiter goes in before the flush: a flush the socket takes whole makes the channel writable
        // again at once, and the writability change it fires must find the waiter (else the handler
        // waits for a change that already happened, and the stream stalls with nothing in flight).
        let promise = context.eventLoop.makePromise(of: Void.self)
        writabilityWaiters.append(promise)
        context.flush()
        flushScheduled = false
        if context.channel.isWritable { wakeWritabilityWaiters() }
        return promise.futureResult
    }

    // MARK: shutdown

    /// Stops taking new calls; closes the connection once its calls are done, or after `grace`
    /// cancels the ones still running (they end with CANCELLED). The future completes on close.
    func drain(grace: TimeAmount) -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeSucceededVoidFuture() }
        draining = true
        let closed = context.channel.closeFuture
        if calls.isEmpty {
            context.close(promise: nil)
        } else if drainTimer == nil {
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            drainTimer = context.eventLoop.scheduleTask(in: grace) {
                bound.value.cancelAllAndClose()
            }
        }
        return closed
    }

    private func cancelAllAndClose() {
        for callID in Array(calls.keys) {
            finishEarly(callID: callID, RPCError(.cancelled, "the server is shutting down"))
        }
        context?.close(promise: nil)
    }

    private func callEnded() {
        if idleTimeout != nil, calls.isEmpty {
            lastActivity = .now()
        }
        if draining, calls.isEmpty, let context {
            drainTimer?.cancel()
            context.flush()
            context.close(promise: nil)
        }
    }

    // MARK: writing

    private func writeStatus(callID: UInt64, _ status: RPCError) {
        write(Self.statusFrame(callID: callID, status))
    }

    static func statusFrame(callID: UInt64, _ status: RPCError) -> ByteBuffer {
        var frame = ByteBuffer()
        RPCEnvelope.writeFrame(
            into: &frame, callID: callID, statusCode: status.code.rawValue, statusMessage: status.message,
            endOfStream: true)
        return frame
    }

    /// Writes without flushing; one flush per read burst or per turn of the event loop.
    private func write(_ frame: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        if !inReadBurst && !flushScheduled {
            flushScheduled = true
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute {
                bound.value.flushNow()
            }
        }
    }

    private func flushNow() {
        guard flushScheduled else { return }
        flushScheduled = false
        context?.flush()
    }

    private func oversizedResponse(_ frame: ByteBuffer) -> RPCError {
        RPCError(
            .resourceExhausted,
            "the response frame of \(frame.readableBytes - 4) bytes exceeds the server's maximum frame size of \(maxFrameSize) bytes; page the result or raise maxFrameSize")
    }

    // MARK: malformed input and idleness

    /// Counts a malformed frame or request and reports it to the server's rate-limited log.
    private func recordMalformedInput(_ reason: String) {
        malformedCount += 1
        malformedLog.record(connection: connectionNumber, countOnConnection: malformedCount, reason)
    }

    private func closeOnMalformedInput(context: ChannelHandlerContext, _ reason: String) {
        guard !closingForMalformedInput else { return }
        closingForMalformedInput = true
        recordMalformedInput("\(reason); connection closed")
        context.close(promise: nil)
    }

    /// The description of a decoding error, or nil if `error` is not about the bytes received.
    private static func malformedInputDescription(_ error: any Error) -> String? {
        switch error {
        case let error as RPCFrameTooLargeError:
            return error.description
        case let error as RPCEnvelopeDecodingError:
            return error.description
        case let error as ByteToMessageDecoderError:
            return "undecodable frame: \(error)"
        default:
            return nil
        }
    }

    private func scheduleIdleCheck(at deadline: NIODeadline) {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        idleTimer = eventLoop.scheduleTask(deadline: deadline) {
            bound.value.checkIdle()
        }
    }

    /// The idle timer fired: close the connection if a partial frame has waited, or nothing has
    /// arrived with no call in flight, for the idle timeout; otherwise look again when that could
    /// first be true. Calls in flight (a long stream, a slow handler) keep a connection open.
    private func checkIdle() {
        idleTimer = nil
        guard let context, let idleTimeout else { return }
        let now = NIODeadline.now()
        let due: NIODeadline
        let reason: String
        if let since = partialFrameSince {
            due = since + idleTimeout
            reason = "a partial frame was not completed within \(Duration(idleTimeout))"
        } else if !calls.isEmpty {
            scheduleIdleCheck(at: now + idleTimeout)
            return
        } else {
            due = lastActivity + idleTimeout
            reason = "nothing received and no call in flight for \(Duration(idleTimeout))"
        }
        guard now >= due else {
            scheduleIdleCheck(at: due)
            return
        }
        idleLog.record(connection: connectionNumber, countOnConnection: 1, "\(reason); connection closed")
        context.close(promise: nil)
    }

    private func failWritabilityWaiters() {
        let waiters = writabilityWaiters
        writabilityWaiters.removeAll()
        for waiter in waiters {
            waiter.fail(RPCError(.cancelled, "the connection closed"))
        }
    }
}

/// How a handler's task ended: the call's final frame, and why its request could not be decoded if
/// that is why it failed (the connection counts it as malformed input).
struct RPCCallOutcome: Sendable {
    var callID: UInt64
    var frame: ByteBuffer
    var undecodableRequest: String?
}

/// Runs a handler and turns its outcome into the call's final frame.
private func runHandler(
    _ method: RPCServerMethod, _ payload: ByteBuffer, _ context: RPCCallContext, _ stream: RPCServerCallStream
) async -> RPCCallOutcome {
    do {
        return RPCCallOutcome(callID: context.callID, frame: try await method.run(payload, context, stream))
    } catch let error as RPCUndecodableRequestError {
        return RPCCallOutcome(
            callID: context.callID,
            frame: RPCServerConnectionHandler.statusFrame(callID: context.callID, error.status),
            undecodableRequest: error.status.message)
    } catch {
        return RPCCallOutcome(
            callID: context.callID,
            frame: RPCServerConnectionHandler.statusFrame(callID: context.callID, RPCError(mapping: error)))
    }
}
