/// Content-defined chunking (FastCDC with normalized chunking, level 2), streaming.
///
/// Two ways to use it:
/// - **Buffered**: feed buffers of any size with ``feed(_:emit:)``; every complete chunk is handed to
///   `emit` as soon as its end is known; ``cut(emit:)`` ends the chunk being formed where the stream is
///   (a forced cut), ``finish(emit:)`` hands over the tail. The chunker keeps the pending bytes.
/// - **Scanning**: ``nextCut(in:)`` only finds where the current chunk ends, and the caller keeps the
///   bytes (no copy here); ``startChunk()`` makes the next bytes start a new chunk (a forced cut).
///
/// Content-defined boundaries depend only on the bytes since the last cut (and ``ChunkerParameters``
/// and ``GearTable``), never on how they were split into buffers.
///
/// The gear hash is `h = (h << 1) &+ gear[byte]`; its top bits depend on the last 64 bytes only, so a
/// cut is declared where the top bits are all zero: `log2(average) + 2` bits before the average size
/// (harder), `log2(average) - 2` bits after it (easier), a forced cut at the maximum. No cut is looked
/// for in the first `minimum` bytes of a chunk. Memory: at most `maximum` bytes pending (buffered use).
public struct Chunker: Sendable {
    /// The sizes this chunker cuts at.
    public let parameters: ChunkerParameters
    private let maskHard: UInt64
    private let maskEasy: UInt64
    /// Bytes of the current chunk seen so far.
    public private(set) var chunkLength = 0
    /// The gear hash after the current chunk's bytes (0 until `minimum`).
    private var hash: UInt64 = 0
    /// Buffered use only: the bytes of the current chunk.
    private var pending: [UInt8] = []

    /// A chunker with `parameters` (``ChunkerParameters/standard`` for repositories in production).
    public init(parameters: ChunkerParameters = .standard) {
        self.parameters = parameters
        let bits = parameters.average.trailingZeroBitCount
        maskHard = ~UInt64(0) << UInt64(64 - min(bits + 2, 63))
        maskEasy = ~UInt64(0) << UInt64(64 - max(bits - 2, 1))
    }

    // MARK: scanning

    /// Scans `bytes`, the next bytes of the current chunk. Returns how many of them complete it (the
    /// chunk ends after them; the bytes after start the next chunk), or nil when all of them belong to
    /// the current chunk and its end is not among them.
    public mutating func nextCut(in bytes: UnsafeRawBufferPointer) -> Int? {
        let count = bytes.count
        guard count > 0 else { return nil }
        let minimum = parameters.minimum, average = parameters.average, maximum = parameters.maximum
        // Chunk position of bytes[0]; byte i is at position base + i.
        let base = chunkLength
        var i = 0
        if base < minimum {
            i = min(minimum - base, count)
            if i == count {
                chunkLength = base + count
                return nil
            }
        }
        var h = hash
        let hard = maskHard, easy = maskEasy
        let p = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let cut: Int? = GearTable.values.withUnsafeBufferPointer { table -> Int? in
            let gear = table.baseAddress!
            let normalEnd = min(count, max(i, average - base))
            if let found = Self.scan(p, gear, from: &i, to: normalEnd, hash: &h, mask: hard) { return found }
            let end = min(count, maximum - base)
            if let found = Self.scan(p, gear, from: &i, to: end, hash: &h, mask: easy) { return found }
            return base + i >= maximum ? i : nil
        }
        if let cut {
            startChunk()
            return cut
        }
        chunkLength = base + count
        hash = h
        return nil
    }

    /// Rolls the gear hash over `p[i..<end]`; returns the index just after the first byte where
    /// `hash & mask == 0`, or nil with `i == end` and `hash` updated.
    ///
    /// Two bytes per step: the hash after both is `(h << 2) + (2 g0 + g1)`, so the chain from one step
    /// to the next is shorter than two single-byte updates (the hash after the first byte is computed
    /// beside it, for its test). The same cut points as one byte at a time.
    @inline(__always)
    private static func scan(
        _ p: UnsafePointer<UInt8>, _ gear: UnsafePointer<UInt64>, from i: inout Int, to end: Int, hash h: inout UInt64, mask: UInt64
    ) -> Int? {
        var j = i, hash = h
        defer {
            i = j
            h = hash
        }
        while j &+ 1 < end {
            let g0 = gear[Int(p[j])], g1 = gear[Int(p[j &+ 1])]
            let first = (hash << 1) &+ g0
            hash = (hash << 2) &+ ((g0 << 1) &+ g1)
            if first & mask == 0 {
                j &+= 1
                return j
            }
            j &+= 2
            if hash & mask == 0 { return j }
        }
        if j < end {
            hash = (hash << 1) &+ gear[Int(p[j])]
            j &+= 1
            if hash & mask == 0 { return j }
        }
        return nil
    }

    /// Ends the current chunk where the stream is (a forced cut): the next bytes start a new chunk.
    /// Scanning use; buffered use calls ``cut(emit:)``, which also hands over the pending bytes.
    public mutating func startChunk() {
        chunkLength = 0
        hash = 0
    }

    // MARK: buffered

    /// Adds `bytes`; calls `emit` with each chunk completed (the buffer is valid only during the call).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        if pending.capacity < parameters.maximum { pending.reserveCapacity(parameters.maximum) }
        var rest = bytes
        while !rest.isEmpty {
            guard let n = nextCut(in: rest) else {
                pending.append(contentsOf: rest)
                return
            }
            let head = UnsafeRawBufferPointer(rebasing: rest[..<n])
            if pending.isEmpty {
                try emit(head)
            } else {
                pending.append(contentsOf: head)
                try pending.withUnsafeBytes { try emit($0) }
                pending.removeAll(keepingCapacity: true)
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    /// Adds `bytes` (see ``feed(_:emit:)``).
    public mutating func feed(_ bytes: [UInt8], emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { try feed($0, emit: emit) }
    }

    /// A forced cut: emits the bytes pending (if any, possibly fewer than the minimum) as a chunk, so
    /// that the next bytes fed start a new one.
    public mutating func cut(emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        if !pending.isEmpty {
            try pending.withUnsafeBytes { try emit($0) }
        }
        pending.removeAll(keepingCapacity: true)
        startChunk()
    }

    /// Emits the last chunk (anything pending, possibly shorter than the minimum) and resets the
    /// chunker for a new stream.
    public mutating func finish(emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try cut(emit: emit)
    }
}
