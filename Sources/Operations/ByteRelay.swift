import Dispatch
import Foundation

/// Carries bytes from one blocking producer (a ``BlockingPool`` job reading the repository) to one async
/// consumer (a response stream), with at most `capacity` pieces in flight: a slow client slows the
/// reading down instead of filling memory.
///
/// The producer calls ``send(_:)`` (which blocks while the pieces in flight are at capacity) and then
/// ``finish(throwing:)``; the consumer iterates ``pieces``, calls ``consumed()`` after each piece it
/// handled, and ``close()`` when it stops (early or not), which frees a producer waiting for room.
public final class ByteRelay: @unchecked Sendable {  // `closed` behind `lock`
    /// The pieces in order; ends after ``finish(throwing:)`` (with its error, if any).
    public let pieces: AsyncThrowingStream<[UInt8], any Error>
    private let continuation: AsyncThrowingStream<[UInt8], any Error>.Continuation
    private let room: DispatchSemaphore
    private let lock = NSLock()
    private var closed = false

    public init(capacity: Int = 4) {
        precondition(capacity > 0, "a relay needs room for one piece")
        (pieces, continuation) = AsyncThrowingStream.makeStream(of: [UInt8].self)
        room = DispatchSemaphore(value: capacity)
    }

    /// Hands one piece over, blocking until there is room. Throws `CancellationError` once the consumer
    /// closed the relay: the producer stops reading.
    public func send(_ piece: [UInt8]) throws {
        room.wait()
        guard lock.withLock({ !closed }) else {
            room.signal()  // another send after close must not block either
            throw CancellationError()
        }
        continuation.yield(piece)
    }

    /// The producer is done: the stream ends, with `error` when it failed.
    public func finish(throwing error: (any Error)? = nil) {
        continuation.finish(throwing: error)
    }

    /// The consumer handled a piece: room for one more.
    public func consumed() {
        room.signal()
    }

    /// The consumer stops: a producer waiting for room (or sending later) gets `CancellationError`.
    public func close() {
        let first = lock.withLock { () -> Bool in
            defer { closed = true }
            return !closed
        }
        if first { room.signal() }
    }
}
