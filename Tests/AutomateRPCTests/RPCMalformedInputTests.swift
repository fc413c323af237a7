import AutomateRPC
import AutomateSupervisor
import Foundation
import Testing

extension RPCRobustnessTests {
/// Garbage on many connections leaves the server healthy, its memory flat and its log short, with
/// every malformed frame counted.
@Suite struct MalformedInput {
    static func register(_ server: RPCServer) {
        server.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
    }

    /// A frame that is not an envelope.
    static let badEnvelope: [UInt8] = [0x00, 0x00, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    /// A length far above the maximum frame size.
    static let oversized: [UInt8] = [0xFF, 0xFF, 0xFF, 0xF0]

    /// A well-formed envelope whose payload is not a `Msg` (an unterminated varint).
    static func undecodablePayload(callID: UInt64) throws -> [UInt8] {
        var request = Msg()
        request.callID = callID
        request.method = "test/Echo"
        request.payload = Data([0x08, 0xFF, 0xFF])
        return try frame(request)
    }

    /// The malformed inputs the log accounts for: 1 for each line that names a connection, N for
    /// each "N more" summary line.
    static func loggedCount(_ lines: [String]) -> Int {
        lines.filter { $0.contains("malformed RPC input dropped") }.reduce(0) { total, line in
            if let range = line.range(of: #": (\d+) more from"#, options: .regularExpression) {
                let digits = line[range].dropFirst(2).prefix { $0.isNumber }
                return total + (Int(digits) ?? 0)
            }
            return total + 1
        }
    }

    @Test func tenThousandGarbageFramesLeaveTheServerHealthy() async throws {
        let log = LogCapture()
        var expectedTotal = 0
        try await withServer(maxFrameSize: 1 << 20, logger: log.logger(), Self.register) { _, path in
            // Warm up the allocator and the server's loops, then measure.
            var expected = try await Self.garbageConnections(path: path, count: 60, framesEach: 5)
            let rssBefore = Int(ProcessMemory.residentBytes())
            var sent = 0

            // Over 300 connections: 20 frames each (each third sends undecodable requests, which are
            // answered and counted one by one; the others are closed at their first bad frame).
            expected += try await Self.garbageConnections(path: path, count: 300, framesEach: 20)
            sent += 300 * 20

            // Over one connection that reconnects after each bad frame.
            expected += try await onThreadThrowing {
                for i in 0..<4000 {
                    let raw = try RawSocket(path: path)
                    raw.write(i % 2 == 0 ? Self.badEnvelope : Self.oversized)
                    guard raw.blockingWaitForClose() else { throw TimedOut(what: "close after bad frame \(i)") }
                }
                return 4000
            }
            sent += 4000
            #expect(sent == 10_000)

            let client = try await RPCClient.connect(socketPath: path)
            #expect(try await client.unary("test/Echo", Msg.text("healthy"), as: Msg.self).method == "healthy")
            await client.close()
            let rssAfter = Int(ProcessMemory.residentBytes())
            let growth = rssAfter - rssBefore
            #expect(growth < 20 << 20, "RSS grew by \(growth >> 20) MiB (\(rssBefore >> 20) -> \(rssAfter >> 20) MiB)")
            expectedTotal = expected
            print("garbage: 10,000 frames sent, \(expected) malformed inputs for the server, RSS \(rssBefore >> 20) -> \(rssAfter >> 20) MiB")
        }
        // After shutdown (which logs what was held back), the log accounts for every malformed input.
        let lines = log.lines
        print("garbage: \(lines.count) log lines in all, accounting for \(Self.loggedCount(lines)) malformed inputs")
        #expect(lines.count < 100, "\(lines.count) log lines")
        #expect(Self.loggedCount(lines) == expectedTotal, "\(lines)")
    }

    /// Opens `count` connections at once and sends `framesEach` bad frames on each; returns how many
    /// malformed inputs the server must count (all undecodable requests, the first bad frame otherwise).
    static func garbageConnections(path: String, count: Int, framesEach: Int) async throws -> Int {
        try await onThreadThrowing {
            var sockets: [RawSocket] = []
            var counted = 0
            for i in 0..<count {
                let raw = try RawSocket(path: path)
                var bytes: [UInt8] = []
                for n in 0..<framesEach {
                    switch i % 3 {
                    case 0: bytes += try undecodablePayload(callID: UInt64(n + 1))
                    case 1: bytes += badEnvelope
                    default: bytes += n == 0 ? oversized : badEnvelope
                    }
                }
                raw.write(bytes)
                counted += i % 3 == 0 ? framesEach : 1
                sockets.append(raw)
            }
            for (i, raw) in sockets.enumerated() where i % 3 == 0 {
                for _ in 0..<framesEach {
                    guard let reply = raw.blockingReadEnvelope() else { throw TimedOut(what: "replies on connection \(i)") }
                    guard reply.statusCode == RPCStatusCode.invalidArgument.rawValue else {
                        throw TimedOut(what: "INVALID_ARGUMENT on connection \(i), got status \(reply.statusCode)")
                    }
                }
            }
            for (i, raw) in sockets.enumerated() where i % 3 != 0 {
                guard raw.blockingWaitForClose() else { throw TimedOut(what: "close of connection \(i)") }
            }
            return counted
        }
    }
}
}
