import Foundation
import Operations
import Testing

/// A blocking producer and an async consumer joined by a relay: order, backpressure, early stop, errors.
struct ByteRelayTests {
    /// Runs `body` on a thread of its own (a blocking producer must not hold a cooperative thread).
    static func onThread(_ body: @escaping @Sendable () -> Void) {
        Thread { body() }.start()
    }

    @Test func piecesArriveInOrderAndTheProducerWaitsForRoom() async throws {
        let relay = ByteRelay(capacity: 2)
        let sent = Counter()
        Self.onThread {
            for i in 0..<10 {
                try? relay.send([UInt8(i)])
                sent.add()
            }
            relay.finish()
        }
        // Nothing consumed yet: the producer stops after the two pieces there is room for.
        let deadline = ContinuousClock.now + .seconds(5)
        while sent.value < 2 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(200))
        #expect(sent.value == 2)
        var received: [UInt8] = []
        for try await piece in relay.pieces {
            received += piece
            relay.consumed()
        }
        #expect(received == Array(0..<10))
    }

    @Test func closingFreesAWaitingProducer() async throws {
        let relay = ByteRelay(capacity: 1)
        let outcome = Outcome()
        Self.onThread {
            do {
                for _ in 0..<100 { try relay.send([1]) }
                outcome.set("sent everything")
            } catch is CancellationError {
                outcome.set("cancelled")
            } catch {
                outcome.set("\(error)")
            }
        }
        for try await _ in relay.pieces {
            relay.close()  // the consumer leaves after one piece
            break
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while outcome.value == nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(outcome.value == "cancelled")
    }

    @Test func theProducersErrorEndsTheStream() async throws {
        struct Broken: Error {}
        let relay = ByteRelay()
        Self.onThread {
            try? relay.send([1, 2])
            relay.finish(throwing: Broken())
        }
        var got: [UInt8] = []
        await #expect(throws: Broken.self) {
            for try await piece in relay.pieces {
                got += piece
                relay.consumed()
            }
        }
        #expect(got == [1, 2])
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func add() { lock.withLock { count += 1 } }
        var value: Int { lock.withLock { count } }
    }

    final class Outcome: @unchecked Sendable {
        private let lock = NSLock()
        private var text: String?
        func set(_ value: String) { lock.withLock { text = value } }
        var value: String? { lock.withLock { text } }
    }
}
