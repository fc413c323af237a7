import Logging
import NIOCore

/// The client end of a connection. Runs on the connection's event loop: the table of pending calls
/// needs no lock. A unary call waits on one continuation; a streaming call feeds one stream.
final class RPCClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = RPCEnvelope
    typealias OutboundOut = ByteBuffer

    /// Receives a streaming call's messages (decoded on the loop) and its end.
    struct StreamSink: Sendable {
        let message: @Sendable (ByteBuffer) -> Void
        let finish: @Sendable (RPCError?) -> Void
    }

    private enum Pending {
        case unary(UnsafeContinuation<ByteBuffer, any Error>)
        case stream(StreamSink)
    }

    private struct Call {
        var pending: Pending
        var timer: Scheduled<Void>?
    }

    /// A call to start, handed to the loop by `RPCClient` (in batches, see `RPCLoopInbox`).
    enum Start: Sendable {
        case unary(callID: UInt64, frame: ByteBuffer, timeout: Duration?, method: String, UnsafeContinuation<ByteBuffer, any Error>)
        case stream(callID: UInt64, frame: ByteBuffer, timeout: Duration?, method: String, StreamSink)
    }

    private let logger: Logger
    /// Calls to start, submitted from any thread.
    private(set) var starts: RPCLoopInbox<Start>!
    private var context: ChannelHandlerContext?
    private var calls: [UInt64: Call] = [:]
    /// Calls cancelled before their start reached the loop; pruned so it cannot grow without bound.
    private var cancelledBeforeStart: Set<UInt64> = []
    private var highestStartedID: UInt64 = 0
    private var closedError: RPCError?
    private var inReadBurst = false
    private var flushScheduled = false

    init(logger: Logger, eventLoop: any EventLoop) {
        self.logger = logger
        self.starts = RPCLoopInbox(eventLoop: eventLoop) { [weak self] batch in
            self?.start(batch)
        }
    }

    private func start(_ batch: [Start]) {
        inReadBurst = true
        for item in batch {
            switch item {
            case .unary(let callID, let frame, let timeout, let method, let continuation):
                startUnary(callID: callID, frame: frame, timeout: timeout, method: method, continuation: continuation)
            case .stream(let callID, let frame, let timeout, let method, let sink):
                startStream(callID: callID, frame: frame, timeout: timeout, method: method, sink: sink)
            }
        }
        inReadBurst = false
        context?.flush()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: starting and cancelling

    func startUnary(
        callID: UInt64, frame: ByteBuffer, timeout: Duration?, method: String,
        continuation: UnsafeContinuation<ByteBuffer, any Error>
    ) {
        guard begin(callID: callID) else {
            continuation.resume(throwing: closedError ?? RPCError(.cancelled, "\(method) was cancelled by the caller"))
            return
        }
        calls[callID] = Call(pending: .unary(continuation), timer: makeTimer(callID, timeout, method))
        write(frame)
    }

    func startStream(callID: UInt64, frame: ByteBuffer, timeout: Duration?, method: String, sink: StreamSink) {
        guard begin(callID: callID) else {
            sink.finish(closedError ?? RPCError(.cancelled, "\(method) was cancelled by the caller"))
            return
        }
        calls[callID] = Call(pending: .stream(sink), timer: makeTimer(callID, timeout, method))
        write(frame)
    }

    /// Ends a call on this side with `status` and tells the server to cancel it.
    func cancel(callID: UInt64, _ status: RPCError) {
        guard calls[callID] != nil else {
            noteCancelledBeforeStart(callID)
            return
        }
        complete(callID: callID, with: .failure(status))
        var frame = ByteBuffer()
        RPCEnvelope.writeFrame(into: &frame, callID: callID, cancel: true)
        write(frame)
    }

    private func begin(callID: UInt64) -> Bool {
        highestStartedID = max(highestStartedID, callID)
        if !cancelledBeforeStart.isEmpty, cancelledBeforeStart.remove(callID) != nil { return false }
        return closedError == nil && context != nil
    }

    private func noteCancelledBeforeStart(_ callID: UInt64) {
        cancelledBeforeStart.insert(callID)
        if cancelledBeforeStart.count > 1024 {
            // Ids are handed out in order and started within microseconds; old entries are calls that
            // finished just before their cancellation arrived.
            let floor = highestStartedID > 4096 ? highestStartedID - 4096 : 0
            cancelledBeforeStart = cancelledBeforeStart.filter { $0 > floor }
        }
    }

    private func makeTimer(_ callID: UInt64, _ timeout: Duration?, _ method: String) -> Scheduled<Void>? {
        guard let timeout, let context else { return nil }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        return context.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            bound.value.cancel(
                callID: callID, RPCError(.deadlineExceeded, "\(method) did not finish within its timeout of \(timeout)"))
        }
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inReadBurst = true
        let envelope = unwrapInboundIn(data)
        guard let call = calls[envelope.callID] else { return }  // already ended here (cancelled, timed out)
        if envelope.endOfStream {
            if envelope.statusCode == 0 {
                complete(callID: envelope.callID, with: .success(envelope.payload))
            } else {
                let code = RPCStatusCode(rawValue: envelope.statusCode) ?? .unknown
                complete(callID: envelope.callID, with: .failure(RPCError(code, envelope.statusMessage)))
            }
        } else if case .stream(let sink) = call.pending {
            sink.message(envelope.payload)
        } else {
            logger.warning("ignoring a non-final envelope for unary call \(envelope.callID)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        context.flush()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = closedError ?? RPCError(.unavailable, "the connection to the server closed")
        closedError = error
        failAll(error)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.error("closing RPC connection: \(error)")
        closedError = RPCError(.unavailable, "the connection to the server failed: \(error)")
        context.close(promise: nil)
    }

    /// Fails every pending call and refuses new ones (`close()`).
    func shutDown() {
        closedError = closedError ?? RPCError(.unavailable, "the client was closed")
        failAll(closedError!)
        context?.close(promise: nil)
    }

    private func failAll(_ error: RPCError) {
        let calls = self.calls
        self.calls.removeAll()
        for (_, call) in calls {
            call.timer?.cancel()
            switch call.pending {
            case .unary(let continuation): continuation.resume(throwing: error)
            case .stream(let sink): sink.finish(error)
            }
        }
    }

    private func complete(callID: UInt64, with result: Result<ByteBuffer, RPCError>) {
        guard let call = calls.removeValue(forKey: callID) else { return }
        call.timer?.cancel()
        switch (call.pending, result) {
        case (.unary(let continuation), .success(let payload)):
            continuation.resume(returning: payload)
        case (.unary(let continuation), .failure(let error)):
            continuation.resume(throwing: error)
        case (.stream(let sink), .success):
            sink.finish(nil)
        case (.stream(let sink), .failure(let error)):
            sink.finish(error)
        }
    }

    // MARK: writing

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
        flushScheduled = false
        context?.flush()
    }
}
