import AutomateRPC
import Foundation
import Testing

struct Boom: Error, CustomStringConvertible {
    var description: String { "the disk caught fire" }
}

@Suite struct RPCCallTests {
    @Test func unaryRoundTrip() async throws {
        try await withServer({ server in
            server.registerUnary("test/Echo") { (request: Msg, context: RPCCallContext) in
                Msg.text(request.method.uppercased(), number: context.callID)
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let response = try await client.unary("test/Echo", Msg.text("hello"), as: Msg.self)
            #expect(response.method == "HELLO")
            #expect(response.callID == 1)
            await client.close()
        }
    }

    @Test(arguments: [false, true])
    func thousandConcurrentCallsOnOneConnection(onEventLoop: Bool) async throws {
        try await withServer(onEventLoop: onEventLoop, { server in
            server.registerUnary("test/Double") { (request: Msg, _: RPCCallContext) in
                if request.callID % 7 == 0 { await Task.yield() }
                return Msg.text(request.method, number: request.callID * 2)
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 1...1000 {
                    group.addTask {
                        let response = try await client.unary("test/Double", Msg.text("n\(i)", number: UInt64(i)), as: Msg.self)
                        #expect(response.callID == UInt64(2 * i))
                        #expect(response.method == "n\(i)")
                    }
                }
                try await group.waitForAll()
            }
            await client.close()
        }
    }

    @Test(arguments: [false, true])
    func serverStreamKeepsOrder(onEventLoop: Bool) async throws {
        try await withServer(onEventLoop: onEventLoop, { server in
            server.registerServerStream("test/Count") { (request: Msg, writer: RPCResponseWriter<Msg>, _: RPCCallContext) in
                for i in 0..<request.callID {
                    var message = Msg.text("item", number: i)
                    message.payload = Data(repeating: UInt8(i % 256), count: 512)
                    try await writer.send(message)
                }
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            // Two streams at once plus unary traffic on the same connection.
            async let a: [UInt64] = client.serverStream("test/Count", Msg.text("", number: 5000), as: Msg.self)
                .reduce(into: []) { $0.append($1.callID) }
            async let b: [UInt64] = client.serverStream("test/Count", Msg.text("", number: 300), as: Msg.self)
                .reduce(into: []) { $0.append($1.callID) }
            let (first, second) = try await (a, b)
            #expect(first == Array(0..<5000))
            #expect(second == Array(0..<300))
            await client.close()
        }
    }

    /// Frames larger than the channel's high-water mark (a base backup's 1 MiB pieces): each write
    /// leaves the channel unwritable until flushed. A socket that takes a flush whole makes it writable
    /// again inside the flush; the handler must not then wait for a change that already happened.
    @Test(arguments: [false, true])
    func largeFramesStreamToTheEnd(onEventLoop: Bool) async throws {
        try await withServer(onEventLoop: onEventLoop, { server in
            server.registerServerStream("test/Big") { (request: Msg, writer: RPCResponseWriter<Msg>, _: RPCCallContext) in
                for i in 0..<request.callID {
                    var message = Msg.text("piece", number: i)
                    message.payload = Data(repeating: UInt8(i % 256), count: 1 << 20)
                    try await writer.send(message)
                }
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            var received: [UInt64] = []
            for try await message in client.serverStream("test/Big", Msg.text("", number: 300), as: Msg.self, timeout: .seconds(60)) {
                #expect(message.payload.count == 1 << 20)
                received.append(message.callID)
            }
            #expect(received == Array(0..<300))
            await client.close()
        }
    }

    @Test func handlerErrorsMapToStatuses() async throws {
        try await withServer({ server in
            server.registerUnary("test/Fail") { (request: Msg, _: RPCCallContext) -> Msg in
                if request.method == "typed" { throw RPCError(.notFound, "no backup 20260302081223") }
                throw Boom()
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let typed = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Fail", Msg.text("typed"), as: Msg.self)
            }
            #expect(typed == RPCError(.notFound, "no backup 20260302081223"))
            let other = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Fail", Msg.text("other"), as: Msg.self)
            }
            #expect(other?.code == .internal)
            #expect(other?.message == "the disk caught fire")
            await client.close()
        }
    }

    @Test func unknownMethodIsUnimplemented() async throws {
        try await withServer({ _ in }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Nope", Msg(), as: Msg.self)
            }
            #expect(error?.code == .unimplemented)
            #expect(error?.message.contains("test/Nope") == true)
            await client.close()
        }
    }

    @Test func undecodableRequestIsInvalidArgument() async throws {
        try await withServer({ server in
            server.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
        }) { _, path in
            // Bytes that are not a Msg (field 3 claims 127 bytes; 0 follow), sent over a raw socket.
            var request = Msg()
            request.callID = 9
            request.method = "test/Echo"
            request.payload = Data([0x1A, 0x7F])
            let raw = try RawSocket(path: path)
            raw.write(try frame(request))
            let reply = try #require(await raw.readFrame())
            #expect(reply.callID == 9)
            #expect(reply.endOfStream)
            #expect(reply.statusCode == RPCStatusCode.invalidArgument.rawValue)
            #expect(reply.statusMessage.contains("test/Echo"))
        }
    }

    @Test func connectFailureIsUnavailable() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let error = await #expect(throws: RPCError.self) {
            _ = try await RPCClient.connect(socketPath: dir.socket("absent.sock"))
        }
        #expect(error?.code == .unavailable)
        #expect(error?.message.hasPrefix("cannot connect to \(dir.socket("absent.sock")): ") == true)
    }
}
