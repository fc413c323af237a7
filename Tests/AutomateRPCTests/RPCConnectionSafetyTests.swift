import AutomateRPC
import Foundation
import Testing

/// Bad bytes on one connection close that connection only.
@Suite struct RPCConnectionSafetyTests {
    static func register(_ server: RPCServer) {
        server.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
    }

    @Test func oversizedFrameClosesOnlyThatConnection() async throws {
        try await withServer(maxFrameSize: 1024, Self.register) { _, path in
            let good = try await RPCClient.connect(socketPath: path)
            let raw = try RawSocket(path: path)
            raw.write([0x00, 0x00, 0x04, 0x01])  // 1025 > 1024
            #expect(await raw.waitForClose())
            let huge = try RawSocket(path: path)
            huge.write([0xFF, 0xFF, 0xFF, 0xFF])
            #expect(await huge.waitForClose())
            #expect(try await good.unary("test/Echo", Msg.text("still here"), as: Msg.self).method == "still here")
            let second = try await RPCClient.connect(socketPath: path)
            #expect(try await second.unary("test/Echo", Msg.text("new"), as: Msg.self).method == "new")
            await good.close()
            await second.close()
        }
    }

    @Test func garbageFrameClosesOnlyThatConnection() async throws {
        try await withServer(Self.register) { _, path in
            let good = try await RPCClient.connect(socketPath: path)
            let raw = try RawSocket(path: path)
            raw.write([0x00, 0x00, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            #expect(await raw.waitForClose())
            #expect(try await good.unary("test/Echo", Msg.text("ok"), as: Msg.self).method == "ok")
            let second = try await RPCClient.connect(socketPath: path)
            #expect(try await second.unary("test/Echo", Msg.text("new"), as: Msg.self).method == "new")
            await good.close()
            await second.close()
        }
    }

    @Test func requestWrittenByteByByteIsServed() async throws {
        try await withServer(Self.register) { _, path in
            var request = Msg()
            request.callID = 1
            request.method = "test/Echo"
            request.payload = try Msg.text("slow").serializedData()
            let raw = try RawSocket(path: path)
            for byte in try frame(request) {
                raw.write([byte])
            }
            let reply = try #require(await raw.readFrame())
            #expect(reply.callID == 1 && reply.endOfStream && reply.statusCode == 0)
            #expect(try Msg(serializedBytes: reply.payload).method == "slow")
        }
    }

    @Test func clientRejectsOversizedResponse() async throws {
        try await withServer({ server in
            server.registerUnary("test/Big") { (_: Msg, _: RPCCallContext) in
                var message = Msg()
                message.payload = Data(count: 4096)
                return message
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path, maxFrameSize: 1024)
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Big", Msg(), as: Msg.self)
            }
            #expect(error?.code == .unavailable)
        }
    }

    @Test func oversizedMessagesAreRefusedWithResourceExhausted() async throws {
        try await withServer(maxFrameSize: 2048, { server in
            server.registerUnary("test/Big") { (_: Msg, _: RPCCallContext) in
                var message = Msg()
                message.payload = Data(count: 4096)
                return message
            }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path, maxFrameSize: 1 << 20)
            let response = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Big", Msg(), as: Msg.self)
            }
            #expect(response?.code == .resourceExhausted)
            let small = try await RPCClient.connect(socketPath: path, maxFrameSize: 1024)
            var big = Msg()
            big.payload = Data(count: 2000)
            let request = await #expect(throws: RPCError.self) {
                _ = try await small.unary("test/Big", big, as: Msg.self)
            }
            #expect(request?.code == .resourceExhausted)
            await client.close()
            await small.close()
        }
    }

    @Test func absurdTimeoutDoesNotCrashTheServer() async throws {
        try await withServer(Self.register) { _, path in
            var request = Msg()
            request.callID = 1
            request.method = "test/Echo"
            request.timeoutMicros = .max
            let raw = try RawSocket(path: path)
            raw.write(try frame(request))
            let reply = try #require(await raw.readFrame())
            #expect(reply.statusCode == 0 && reply.endOfStream)
            let client = try await RPCClient.connect(socketPath: path)
            _ = try await client.unary("test/Echo", Msg(), as: Msg.self, timeout: .seconds(Int64.max))
            let expired = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Echo", Msg(), as: Msg.self, timeout: .seconds(-1))
            }
            #expect(expired?.code == .deadlineExceeded)
            await client.close()
        }
    }
}
