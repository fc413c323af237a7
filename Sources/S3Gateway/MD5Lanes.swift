import CAutomateShims
import Crypto
import Foundation
import NIOCore
import Synchronization

/// Hashes the uploads' MD5s several at a time: one driver on the file pool takes up to eight queued updates
/// (each a batch of one upload's bytes) and runs them in lockstep, one upload per 32-bit lane of AVX2
/// (`automate_md5_x8`), so eight part uploads hash for little more than the CPU of one. MD5 is serial within
/// a stream (about 480 MB/s on one core here), and it was a third of the gateway's CPU in a multipart upload.
///
/// One round costs about what 2.3 blocks of one stream cost (`automate_md5_blocks`), so lanes pay from three
/// streams on. An update that finds no other in flight is hashed at once on a pool thread of its own; others
/// go to the driver's queue, which starts the driver once ``enoughLanes`` wait or after ``gathering``. The
/// driver hashes one or two lanes left alone 64 KiB at a time, so that updates arriving meanwhile join in.
/// Without AVX2 every update is hashed on its own. Each stream's updates are issued one after another
/// (``PendingFile``'s hash chain); updates of different streams may share a round.
final class MD5Lanes: @unchecked Sendable {  // the counters, `queue` and `driving` are only touched with `lock` held
    static let shared = MD5Lanes()

    private let lock = NSLock()
    private var queue: [Update] = []
    private var driving = false
    /// Whether a start of the driver is scheduled.
    private var armed = false
    /// Updates submitted and not yet hashed, on their own or in the driver.
    private var inFlight = 0
    private var lockstepRounds = 0
    private let vectors = automate_md5_x8_available() != 0

    /// Blocks per lane per round: 64 KiB.
    static let roundBlocks = 1024

    /// One batch of a stream's bytes, and whom to tell once they are hashed.
    private struct Update {
        let stream: LaneMD5
        let buffers: [ByteBuffer]
        let done: CheckedContinuation<Void, Never>?
    }

    /// Rounds run with several lanes so far (the tests check that the lanes are used).
    var roundsInLockstep: Int { lock.withLock { lockstepRounds } }

    /// Adds `buffers` to `stream`'s MD5; returns once they are hashed. Throws only when the file pool is shut
    /// down (the gateway is stopping).
    func update(_ stream: LaneMD5, _ buffers: [ByteBuffer]) async throws {
        let alone = lock.withLock { () -> Bool in
            inFlight += 1
            return inFlight <= 1 || !vectors
        }
        if alone {
            defer { lock.withLock { inFlight -= 1 } }
            let update = Update(stream: stream, buffers: buffers, done: nil)
            try await FilePool.run {
                var lane = Lane(update)
                lane.hashAlone(blocks: .max)
                lane.complete()
            }
            return
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let (start, arm) = lock.withLock { () -> (Bool, Bool) in
                queue.append(Update(stream: stream, buffers: buffers, done: done))
                if driving { return (false, false) }
                if queue.count >= Self.enoughLanes {
                    driving = true
                    return (true, false)
                }
                if armed { return (false, false) }
                armed = true
                return (false, true)
            }
            if start { startDriver() }
            if arm {
                Task {
                    try? await Task.sleep(for: Self.gathering)
                    let start = self.lock.withLock { () -> Bool in
                        self.armed = false
                        guard !self.driving, !self.queue.isEmpty else { return false }
                        self.driving = true
                        return true
                    }
                    if start { self.startDriver() }
                }
            }
        }
    }

    /// Queued updates that start the driver at once.
    static let enoughLanes = 4
    /// How long a queued update waits for others before the driver starts anyway.
    static let gathering: Duration = .milliseconds(10)

    /// Runs the driver on the file pool (the caller set `driving`).
    private func startDriver() {
        FilePool.pool.submit { _ in self.drive() }
    }

    /// Runs until nothing is queued or in a lane.
    private func drive() {
        var lanes = [Lane?](repeating: nil, count: 8)
        while true {
            let active = lock.withLock { () -> Int in
                for i in lanes.indices where lanes[i] == nil && !queue.isEmpty {
                    lanes[i] = Lane(queue.removeFirst())
                }
                let n = lanes.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
                if n == 0 { driving = false }
                return n
            }
            if active == 0 { return }
            // An update too short for a whole block is done as soon as it is in a lane (its bytes held over).
            if lanes.contains(where: { $0?.finished == true }) {
                completeFinished(&lanes)
                continue
            }
            if active <= 2 {
                for i in lanes.indices where lanes[i] != nil { lanes[i]!.hashAlone(blocks: Self.roundBlocks) }
            } else {
                Self.round(&lanes)
                lock.withLock { lockstepRounds += 1 }
            }
            completeFinished(&lanes)
        }
    }

    /// Wakes the waiters of the lanes whose updates are hashed, and frees those lanes.
    private func completeFinished(_ lanes: inout [Lane?]) {
        for i in lanes.indices where lanes[i]?.finished == true {
            lanes[i]!.complete()
            lanes[i] = nil
            lock.withLock { inFlight -= 1 }
        }
    }

    /// One lockstep round: every lane advances by the same number of blocks (at most ``roundBlocks``; one
    /// block when a lane's next block straddles two buffers or its stream's held-over bytes).
    private static func round(_ lanes: inout [Lane?]) {
        var blocks = roundBlocks
        for lane in lanes { if let lane { blocks = min(blocks, lane.contiguousBlocks) } }
        blocks = max(blocks, 1)
        var state = [UInt32](repeating: 0, count: 32)
        for (l, lane) in lanes.enumerated() {
            guard let lane else { continue }
            let h = lane.stream.state
            for w in 0..<4 { state[w * 8 + l] = h[w] }
        }
        withBlocks(lanes, blocks: blocks, lane: 0, pointers: []) { pointers in
            state.withUnsafeMutableBufferPointer { s in
                pointers.withUnsafeBufferPointer { p in
                    p.baseAddress!.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: 8) { automate_md5_x8(s.baseAddress!, $0, blocks) }
                }
            }
        }
        for (l, lane) in lanes.enumerated() {
            guard let lane else { continue }
            lane.stream.state = (0..<4).map { state[$0 * 8 + l] }
        }
        for i in lanes.indices where lanes[i] != nil { lanes[i]!.advance(blocks: blocks) }
    }

    /// Calls `body` with the eight lanes' pointers to their next `blocks` blocks (an idle lane reads zeros),
    /// each valid for the call.
    private static func withBlocks(_ lanes: [Lane?], blocks: Int, lane l: Int, pointers: [UnsafePointer<UInt8>],
                                   _ body: ([UnsafePointer<UInt8>]) -> Void) {
        guard l < 8 else { return body(pointers) }
        guard let lane = lanes[l] else {
            return idle.withUnsafeBufferPointer { withBlocks(lanes, blocks: blocks, lane: l + 1, pointers: pointers + [$0.baseAddress!], body) }
        }
        lane.withNext(blocks: blocks) { p in withBlocks(lanes, blocks: blocks, lane: l + 1, pointers: pointers + [p], body) }
    }

    /// What an idle lane hashes: a round's worth of zeros.
    private static let idle = [UInt8](repeating: 0, count: roundBlocks * 64)

    /// An update in a lane: where its next block is.
    private struct Lane {
        let update: Update
        var stream: LaneMD5 { update.stream }
        /// The buffer and the offset in it of the next byte not yet hashed or held over.
        private var buffer = 0
        private var offset = 0
        /// The next block, when it is made of held-over bytes or straddles two buffers.
        private var assembled: [UInt8]?

        init(_ update: Update) {
            self.update = update
            prepare()
        }

        /// Every whole block hashed; the rest (under 64 bytes) held over in the stream.
        var finished: Bool { assembled == nil && buffer == update.buffers.count }

        /// Whole blocks readable in place from here (0 when the next one is assembled).
        var contiguousBlocks: Int {
            guard assembled == nil, buffer < update.buffers.count else { return 0 }
            return (update.buffers[buffer].readableBytes - offset) / 64
        }

        /// Calls `body` with a pointer to the next `blocks` blocks (one when assembled).
        func withNext(blocks: Int, _ body: (UnsafePointer<UInt8>) -> Void) {
            if let assembled {
                assembled.withUnsafeBufferPointer { body($0.baseAddress!) }
            } else {
                update.buffers[buffer].withUnsafeReadableBytes { body($0.baseAddress!.assumingMemoryBound(to: UInt8.self) + offset) }
            }
        }

        /// The next `blocks` blocks were hashed.
        mutating func advance(blocks: Int) {
            if assembled != nil {
                assembled = nil
            } else {
                offset += blocks * 64
            }
            prepare()
        }

        /// Hashes up to `limit` blocks of this lane alone, one stream's way.
        mutating func hashAlone(blocks limit: Int) {
            var done = 0
            while done < limit, !finished {
                let n = max(1, min(limit - done, contiguousBlocks))
                var h = stream.state
                h.withUnsafeMutableBufferPointer { s in withNext(blocks: n) { automate_md5_blocks(s.baseAddress!, $0, n) } }
                stream.state = h
                advance(blocks: n)
                done += n
            }
        }

        /// Moves to the next block: in place if the current buffer holds a whole one past `offset` and nothing is
        /// held over; else assembled from the held-over bytes and the buffers' next bytes; at the end, the bytes
        /// short of a block are held over.
        private mutating func prepare() {
            let buffers = update.buffers
            while buffer < buffers.count, offset == buffers[buffer].readableBytes {
                buffer += 1
                offset = 0
            }
            guard buffer < buffers.count else { return }
            if stream.held.isEmpty, buffers[buffer].readableBytes - offset >= 64 { return }
            var block = stream.held
            stream.held = []
            while block.count < 64, buffer < buffers.count {
                let take = min(64 - block.count, buffers[buffer].readableBytes - offset)
                buffers[buffer].withUnsafeReadableBytes { block.append(contentsOf: $0[offset..<(offset + take)]) }
                offset += take
                if offset == buffers[buffer].readableBytes {
                    buffer += 1
                    offset = 0
                }
            }
            if block.count == 64 {
                assembled = block
            } else {
                stream.held = block
            }
        }

        /// Counts the update's bytes and wakes its waiter.
        func complete() {
            stream.length += UInt64(update.buffers.reduce(0) { $0 + $1.readableBytes })
            update.done?.resume()
        }
    }
}

/// A stream's MD5: in ``MD5Lanes`` when the stream began while at least two others were open (an upload among
/// several, such as the parts of a multipart upload), else BoringSSL's one-stream MD5 on a pool thread, the
/// fastest for an upload on its own. Updated by one update at a time, read by ``finalize()`` once the last
/// update returned.
final class LaneMD5: @unchecked Sendable {
    fileprivate var state: [UInt32] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476]
    fileprivate var held: [UInt8] = []
    fileprivate var length: UInt64 = 0
    /// Set when the stream is hashed on its own.
    private var alone: Insecure.MD5?

    /// Streams open now (made and not yet gone), which decides how a new one is hashed.
    private static let open = Mutex(0)

    /// `inLanes`: force one way (tests); by default the lanes when two other streams are open.
    init(inLanes: Bool? = nil) {
        let others = Self.open.withLock { n in
            n += 1
            return n - 1
        }
        if !(inLanes ?? (others >= 2)) { alone = Insecure.MD5() }
    }

    deinit { Self.open.withLock { $0 -= 1 } }

    /// Adds `buffers` (waits for the lanes or a pool thread).
    func update(_ buffers: [ByteBuffer]) async throws {
        guard alone != nil else { return try await MD5Lanes.shared.update(self, buffers) }
        try await FilePool.run {
            for buf in buffers { buf.withUnsafeReadableBytes { self.alone!.update(bufferPointer: $0) } }
        }
    }

    /// The digest of everything added.
    func finalize() -> [UInt8] {
        if let alone { return Array(alone.finalize()) }
        var digest = [UInt8](repeating: 0, count: 16)
        var h = state
        let tail = held + [UInt8](repeating: 0, count: 64 - held.count)
        h.withUnsafeMutableBufferPointer { s in
            tail.withUnsafeBufferPointer { t in
                digest.withUnsafeMutableBufferPointer { automate_md5_final(s.baseAddress!, t.baseAddress!, held.count, length, $0.baseAddress!) }
            }
        }
        return digest
    }
}
