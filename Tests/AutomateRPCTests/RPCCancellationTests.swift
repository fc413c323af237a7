import AutomateRPC
import Foundation
import Testing

/// Deadlines and cancellation must reach the handler's task, not just the client.
@Suite struct RPCCancellationTests {
    /// A handler that signals when it starts, waits (cancellably) far longer than any test, and
    /// signals if it observed cancellation.
    static func register(_ server: RPCServer, started: Signal, sawCancel: Signal) {
        server.registerUnary("test/Hang") { (_: Msg, context: RPCCallContext) -> Msg in
            started.raise()
            try? await Task.sleep(for: .seconds(600))
            if Task.isCancelled { sawCancel.raise() }
            return Msg.text("finished")
        }
        server.registerServerStream("test/Forever") { (_: Msg, writer: RPCResponseWriter<Msg>, _: RPCCallContext) in
            var i: UInt64 = 0
            do {
                while true {
                    try await writer.send(Msg.text("tick", number: i))
                    if i == 0 { started.raise() }
                    i += 1
                    try await Task.sleep(for: .milliseconds(1))
                }
            } catch {
                if Task.isCancelled { sawCancel.raise() }
                throw error
            }
        }
    }

    @Test(arguments: [false, true])
    func deadlineExceededCancelsTheHandler(onEventLoop: Bool) async throws {
        let started = Signal(), sawCancel = Signal()
        try await withServer(onEventLoop: onEventLoop, { Self.register($0, started: started, sawCancel: sawCancel) }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let clock = ContinuousClock()
            let begin = clock.now
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Hang", Msg(), as: Msg.self, timeout: .milliseconds(200))
            }
            #expect(error?.code == .deadlineExceeded)
            #expect(clock.now - begin < .seconds(5))
            try await started.wait("the handler to start")
            try await sawCancel.wait("the handler to observe cancellation")
            // The connection still works afterwards.
            let second = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Hang", Msg(), as: Msg.self, timeout: .milliseconds(50))
            }
            #expect(second?.code == .deadlineExceeded)
            await client.close()
        }
    }

    @Test(arguments: [false, true])
    func clientCancellationReachesTheHandler(onEventLoop: Bool) async throws {
        let started = Signal(), sawCancel = Signal()
        try await withServer(onEventLoop: onEventLoop, { Self.register($0, started: started, sawCancel: sawCancel) }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let call = Task {
                try await client.unary("test/Hang", Msg(), as: Msg.self)
            }
            try await started.wait("the handler to start")
            call.cancel()
            let result = await call.result
            #expect(throws: RPCError(.cancelled, "test/Hang was cancelled by the caller")) { try result.get() }
            try await sawCancel.wait("the handler to observe cancellation")
            await client.close()
        }
    }

    @Test func endingStreamIterationEarlyCancelsTheHandler() async throws {
        let started = Signal(), sawCancel = Signal()
        try await withServer({ Self.register($0, started: started, sawCancel: sawCancel) }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            var received = 0
            for try await _ in client.serverStream("test/Forever", Msg(), as: Msg.self) {
                received += 1
                if received == 3 { break }
            }
            #expect(received == 3)
            try await sawCancel.wait("the streaming handler to observe cancellation")
            await client.close()
        }
    }

    @Test func disconnectCancelsTheHandler() async throws {
        let started = Signal(), sawCancel = Signal()
        try await withServer({ Self.register($0, started: started, sawCancel: sawCancel) }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let call = Task { try await client.unary("test/Hang", Msg(), as: Msg.self) }
            try await started.wait("the handler to start")
            await client.close()
            let result = await call.result
            #expect(throws: RPCError.self) { try result.get() }
            #expect((try? result.get()) == nil)
            if case .failure(let error as RPCError) = result { #expect(error.code == .unavailable) }
            try await sawCancel.wait("the handler to observe the disconnect")
        }
    }

    @Test func shutdownCancelsCallsAfterGraceAndFailsPendingClients() async throws {
        let started = Signal(), sawCancel = Signal()
        let dir = TempDir()
        defer { dir.remove() }
        var configuration = RPCServer.Configuration(socketPath: dir.socket())
        configuration.shutdownGracePeriod = .milliseconds(100)
        let server = RPCServer(configuration: configuration, logger: testLogger)
        Self.register(server, started: started, sawCancel: sawCancel)
        try await server.start()
        let client = try await RPCClient.connect(socketPath: dir.socket())
        let call = Task { try await client.unary("test/Hang", Msg(), as: Msg.self) }
        try await started.wait("the handler to start")
        try await within(10, "shutdown") { await server.shutdown() }
        let result = await call.result
        if case .failure(let error as RPCError) = result {
            #expect(error.code == .cancelled || error.code == .unavailable)
        } else {
            Issue.record("the call should have failed, got \(result)")
        }
        try await sawCancel.wait("the handler to be cancelled by shutdown")
        #expect(!FileManager.default.fileExists(atPath: dir.socket()))
        // New calls on the old client fail fast.
        let after = await #expect(throws: RPCError.self) {
            _ = try await client.unary("test/Hang", Msg(), as: Msg.self)
        }
        #expect(after?.code == .unavailable)
    }

    @Test func shutdownLetsShortCallsFinish() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let server = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        let started = Signal()
        server.registerUnary("test/Slow") { (request: Msg, _: RPCCallContext) -> Msg in
            started.raise()
            try await Task.sleep(for: .milliseconds(200))
            return request
        }
        try await server.start()
        let client = try await RPCClient.connect(socketPath: dir.socket())
        let call = Task { try await client.unary("test/Slow", Msg.text("done"), as: Msg.self) }
        try await started.wait("the handler to start")
        await server.shutdown()
        #expect(try await call.value.method == "done")
        await client.close()
    }
}
