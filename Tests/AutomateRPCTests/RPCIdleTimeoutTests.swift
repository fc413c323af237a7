import AutomateRPC
import Foundation
import Testing

/// The server under abuse: idle and half-frame connections, garbage frames. One at a time: thousands
/// of connections keep the event loops busy, which would skew the timings of the idle tests.
@Suite(.serialized) enum RPCRobustnessTests {}

extension RPCRobustnessTests {
/// Connections that hold a partial frame, or send nothing while no call is in flight, are closed
/// after the idle timeout; connections with calls in flight are not.
@Suite struct IdleTimeout {
    static let timeout = Duration.milliseconds(300)
    /// For the tests whose well-behaved clients must stay connected: a client's connect and its
    /// first request are separate steps, and on a loaded machine (the other suites run in parallel)
    /// a task can wait its turn on the cooperative pool for a while.
    static let clientTimeout = Duration.seconds(2)

    static func register(_ server: RPCServer) {
        server.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
    }

    @Test func halfFrameConnectionIsClosedAfterTheTimeoutNotBefore() async throws {
        let log = LogCapture()
        // The longer timeout: the server's clock starts at accept, and the half frame must reach it before
        // the clock runs out, which a loaded machine (the other suites run in parallel) can delay past 0.3 s
        // (the server then rightly closes it as a connection that sent nothing).
        let timeout = Self.clientTimeout
        try await withServer(idleTimeout: timeout, logger: log.logger(), Self.register) { _, path in
            let raw = try RawSocket(path: path)
            let sent = ContinuousClock.now
            raw.write([0x00, 0x00, 0x00, 0x10, 0x08, 0x01])  // a 16-byte frame, 2 bytes of it
            let closed = await RawSocketWatch.closeTimes(of: [raw], seconds: 10)
            let after = ContinuousClock.now - sent
            #expect(closed[0] != nil, "the connection holding half a frame was not closed within 10 s")
            #expect(after >= timeout, "closed after \(after), before the \(timeout) timeout")
            #expect(after < timeout + .seconds(3))
        }
        let closes = log.lines.filter { $0.contains("idle RPC connections closed") }
        #expect(closes.count == 1, "\(log.lines)")
        #expect(closes.first?.contains("partial frame") == true, "\(closes)")
    }

    @Test func silentConnectionIsClosedButABusyOneIsNot() async throws {
        try await withServer(idleTimeout: Self.clientTimeout, Self.register) { _, path in
            let silent = try RawSocket(path: path)
            // The server's clock starts when it accepts, after this connect returned: close times count
            // from here (the watch's own thread may start later on a loaded machine).
            let connected = DispatchTime.now().uptimeNanoseconds
            // Watched on a thread of its own while the busy client calls.
            async let silentClosed = RawSocketWatch.closeTimes(of: [silent], seconds: 20, since: connected)
            // A client calling every 50 ms stays connected for three timeouts. On a loaded machine this
            // task can stall for longer than the timeout (before a request leaves, or after a reply
            // came); then the server is right to close. The server received the previous request after
            // this client began sending it, so a close is wrong only when it is noticed less than the
            // timeout after that beginning.
            let client = try await RPCClient.connect(socketPath: path)
            var previousSend = ContinuousClock.now
            for i in 0..<120 {
                let send = ContinuousClock.now
                do {
                    let reply = try await client.unary("test/Echo", Msg.text("call \(i)"), as: Msg.self)
                    #expect(reply.method == "call \(i)")
                } catch let error as RPCError where error.code == .unavailable {
                    let since = ContinuousClock.now - previousSend
                    #expect(since >= Self.clientTimeout, "the busy connection was closed \(since) after its previous request began")
                    break
                }
                previousSend = send
                try await Task.sleep(for: .milliseconds(50))
            }
            let closed = await silentClosed
            #expect(closed[0] != nil, "the silent connection was not closed within 20 s")
            // Closed by the idle timeout, not before it (counted from the connect, which precedes the accept).
            let timeout = Double(Self.clientTimeout.components.seconds)
            #expect((closed[0] ?? 0) >= timeout - 0.01, "closed after \(closed[0] ?? 0) s, before the \(timeout) s timeout")
            await client.close()
        }
    }

    /// A client kept for later calls can tell that the server closed it for idleness (and connect again).
    @Test func clientSeesItsIdleConnectionClosed() async throws {
        try await withServer(idleTimeout: Self.clientTimeout, Self.register) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            _ = try await client.unary("test/Echo", Msg.text("first"), as: Msg.self)
            #expect(client.isActive)
            let deadline = ContinuousClock.now + .seconds(20)
            while client.isActive && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!client.isActive, "the server did not close the idle connection within 20 s")
            await client.close()
        }
    }

    @Test func connectionWithCallsInFlightIsNotIdle() async throws {
        let release = Signal()
        let unaryRelease = Signal()
        try await withServer(idleTimeout: Self.clientTimeout, { server in
            server.registerServerStream("test/Slow") { (_: Msg, writer: RPCResponseWriter<Msg>, _: RPCCallContext) in
                try await writer.send(Msg.text("first"))
                try await release.wait("the test to release the stream", seconds: 20)
                try await writer.send(Msg.text("second"))
            }
            server.registerUnary("test/SlowUnary") { (_: Msg, _: RPCCallContext) in
                try await unaryRelease.wait("the test to release the unary call", seconds: 20)
                return Msg.text("done")
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            var stream = client.serverStream("test/Slow", Msg(), as: Msg.self).makeAsyncIterator()
            #expect(try await stream.next()?.method == "first")
            // Nothing crosses the connection for 3 timeouts; the stream keeps it open.
            try await Task.sleep(for: Self.clientTimeout * 3)
            release.raise()
            #expect(try await stream.next()?.method == "second")
            #expect(try await stream.next() == nil)

            // The same for a unary call whose handler is still running.
            async let reply = client.unary("test/SlowUnary", Msg(), as: Msg.self)
            try await Task.sleep(for: Self.clientTimeout * 3)
            unaryRelease.raise()
            #expect(try await reply.method == "done")
            await client.close()
        }
    }

    @Test func threeThousandHalfFrameConnectionsReleaseTheirDescriptors() async throws {
        let log = LogCapture()
        let timeout = Self.clientTimeout
        try await withServer(idleTimeout: timeout, logger: log.logger(), { server in
            Self.register(server)
            server.registerServerStream("test/Hold") { (_: Msg, writer: RPCResponseWriter<Msg>, _: RPCCallContext) in
                try await writer.send(Msg.text("holding"))
                try await Task.sleep(for: .seconds(120))  // until the client ends the call
            }
        }) { _, path in
            // A client with a call in flight through the flood: it must still be served after it.
            let client = try await RPCClient.connect(socketPath: path)
            let hold = Task {
                for try await _ in client.serverStream("test/Hold", Msg(), as: Msg.self) {}
            }
            let before = try ProcessProbe.openDescriptors()
            // Blocking connects and writes, on a thread of their own.
            let firstWrite = ContinuousClock.now
            var sockets: [RawSocket] = try await onThreadThrowing {
                try (0..<3000).map { _ in
                    let raw = try RawSocket(path: path)
                    raw.write([0x00, 0x00, 0x01, 0x00, 0x08])  // a 256-byte frame, 1 byte of it
                    return raw
                }
            }
            let during = try ProcessProbe.openDescriptors()
            #expect(during >= before + 3000, "before \(before), with 3,000 connections \(during)")
            let closed = await RawSocketWatch.closeTimes(of: sockets, seconds: 30)
            #expect(closed.allSatisfy { $0 != nil }, "\(closed.filter { $0 == nil }.count) connections still open after 30 s")
            // Each connection is closed a timeout after its own byte; the first was written at `firstWrite`.
            #expect(ContinuousClock.now - firstWrite >= timeout)
            sockets.removeAll()  // closes the client ends
            let after = try ProcessProbe.openDescriptors()
            #expect(after <= before + 50, "before \(before), after \(after): the server kept descriptors")
            let slowest = closed.compactMap { $0 }.max() ?? 0
            print("half frames: descriptors \(before) before, \(during) with 3,000 connections, \(after) after; last closed \(slowest) s after the last write")
            #expect(try await client.unary("test/Echo", Msg.text("alive"), as: Msg.self).method == "alive")
            hold.cancel()
            await client.close()
        }
        let lines = log.lines.filter { $0.contains("idle RPC connections closed") }
        #expect(!lines.isEmpty && lines.count < 40, "\(lines.count) lines for 3,000 closed connections")
    }
}
}
