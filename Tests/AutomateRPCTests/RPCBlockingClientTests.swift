import AutomateRPC
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking work on a thread of its own, so it never holds one of the few cooperative threads the
/// server under test needs.
private func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

private let echo = RPCUnaryMethod<Msg, Msg>("test/Echo")

/// The blocking client speaks the same protocol as `RPCClient` against a real `RPCServer`.
@Suite struct RPCBlockingClientTests {
    @Test func callsInTurnOnOneConnection() async throws {
        try await withServer(maxFrameSize: 32 << 20, { server in
            server.registerUnary("test/Echo") { (request: Msg, context: RPCCallContext) in
                var answer = Msg.text(request.method.uppercased(), number: context.callID)
                answer.payload = Data(repeating: 7, count: Int(request.callID))
                return answer
            }
        }) { _, path in
            let answers = try await onThread {
                let client = try RPCBlockingClient(socketPath: path, maxFrameSize: 32 << 20)
                // Call ids go up by one per call; a 20 MiB answer arrives whole.
                return try [0, 1, 20 << 20].map { size in
                    try client.call(echo, Msg.text("call", number: UInt64(size)), timeout: .seconds(30))
                }
            }
            #expect(answers.map(\.callID) == [1, 2, 3])
            #expect(answers.map(\.method) == ["CALL", "CALL", "CALL"])
            #expect(answers.map(\.payload.count) == [0, 1, 20 << 20])
            #expect(answers[2].payload.allSatisfy { $0 == 7 })
        }
    }

    @Test func statusesComeBackAsTheServerSentThem() async throws {
        try await withServer({ server in
            server.registerUnary("test/Fail") { (request: Msg, _: RPCCallContext) -> Msg in
                throw RPCError(.notFound, "no WAL file \(request.method)")
            }
        }) { _, path in
            let (typed, unknown) = try await onThread { () -> (RPCError?, RPCError?) in
                let client = try RPCBlockingClient(socketPath: path)
                func failure(_ body: () throws -> Msg) -> RPCError? {
                    do { _ = try body(); return nil } catch { return error as? RPCError }
                }
                return (failure { try client.call(RPCUnaryMethod<Msg, Msg>("test/Fail"), Msg.text("000000010000000000000042"), timeout: .seconds(30)) },
                        failure { try client.call(RPCUnaryMethod<Msg, Msg>("test/Nope"), Msg(), timeout: .seconds(30)) })
            }
            #expect(typed == RPCError(.notFound, "no WAL file 000000010000000000000042"))
            #expect(unknown?.code == .unimplemented)
            #expect(unknown?.message.contains("test/Nope") == true)
        }
    }

    @Test func aSlowAnswerIsDeadlineExceeded() async throws {
        try await withServer({ server in
            server.registerUnary("test/Slow") { (request: Msg, _: RPCCallContext) -> Msg in
                try await Task.sleep(for: .seconds(20))
                return request
            }
        }) { _, path in
            let started = ContinuousClock.now
            let error = try await onThread { () -> RPCError? in
                let client = try RPCBlockingClient(socketPath: path)
                do { _ = try client.call(RPCUnaryMethod<Msg, Msg>("test/Slow"), Msg(), timeout: .milliseconds(300)); return nil } catch {
                    return error as? RPCError
                }
            }
            #expect(error?.code == .deadlineExceeded)
            #expect(error?.message == "test/Slow did not finish within its timeout of 0.3 seconds")
            #expect(ContinuousClock.now - started < .seconds(15))
        }
    }

    @Test func nothingListeningIsUnavailable() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let error = #expect(throws: RPCError.self) { _ = try RPCBlockingClient(socketPath: dir.socket("absent.sock")) }
        #expect(error?.code == .unavailable)
        #expect(error?.message.hasPrefix("cannot connect to \(dir.socket("absent.sock")): ") == true)
        let long = #expect(throws: RPCError.self) { _ = try RPCBlockingClient(socketPath: "/tmp/" + String(repeating: "x", count: 200)) }
        #expect(long?.code == .invalidArgument)
    }

    /// A server that reads the request and hangs up without answering: the call fails as unavailable
    /// instead of waiting for its deadline.
    @Test func aClosedConnectionIsUnavailable() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.path + "/run", withIntermediateDirectories: true)
        let path = dir.socket("hangs-up.sock")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0 && listen(listener, 4) == 0)
        Thread {
            let peer = accept(listener, nil, nil)
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = read(peer, &buffer, buffer.count)
            close(peer)
        }.start()
        let started = ContinuousClock.now
        let error = try await onThread { () -> RPCError? in
            let client = try RPCBlockingClient(socketPath: path)
            do { _ = try client.call(echo, Msg.text("hello"), timeout: .seconds(30)); return nil } catch { return error as? RPCError }
        }
        #expect(error == RPCError(.unavailable, "the connection to the server closed"))
        #expect(ContinuousClock.now - started < .seconds(15))
    }
}
