/// Content-defined chunking (FastCDC with normalized chunking, level 2), streaming.
///
/// Feed buffers of any size with ``feed(_:emit:)``; every complete chunk is handed to `emit` as soon as
/// its end is known; ``finish(emit:)`` hands over the tail. Boundaries depend only on the bytes (and
/// ``ChunkerParameters`` and ``GearTable``), never on how they were split into buffers.
///
/// The gear hash is `h = (h << 1) &+ gear[byte]`; its top bits depend on the last 64 bytes only, so a
/// cut is declared where the top bits are all zero: `log2(average) + 2` bits before the average size
/// (harder), `log2(average) - 2` bits after it (easier), a forced cut at the maximum. No cut is looked
/// for in the first `minimum` bytes of a chunk. Memory: at most `maximum` bytes pending.
public struct Chunker: Sendable {
    /// The sizes this chunker cuts at.
    public let parameters: ChunkerParameters
    private let maskHard: UInt64
    private let maskEasy: UInt64
    /// Bytes of the chunk being formed: `pending[start...]`.
    private var pending: [UInt8] = []
    private var start = 0
    /// How far into the current chunk the search has gone, and the hash there.
    private var scanned = 0
    private var hash: UInt64 = 0

    /// A chunker with `parameters` (``ChunkerParameters/standard`` for repositories in production).
    public init(parameters: ChunkerParameters = .standard) {
        self.parameters = parameters
        let bits = parameters.average.trailingZeroBitCount
        maskHard = ~UInt64(0) << UInt64(64 - min(bits + 2, 63))
        maskEasy = ~UInt64(0) << UInt64(64 - max(bits - 2, 1))
        pending.reserveCapacity(parameters.maximum)
    }

    /// Adds `bytes`; calls `emit` with each chunk completed (the buffer is valid only during the call).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var offset = 0
        while offset < bytes.count {
            // Take only what can complete the current chunk, so pending never exceeds the maximum.
            let room = parameters.maximum - (pending.count - start)
            let take = min(room, bytes.count - offset)
            if start > 0, pending.count + take > pending.capacity {
                pending.removeSubrange(0..<start)
                start = 0
            }
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take]))
            offset += take
            while let cut = findCut() {
                try pending.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[start..<start + cut])) }
                start += cut
                scanned = 0
                hash = 0
            }
            if start == pending.count {
                pending.removeAll(keepingCapacity: true)
                start = 0
            }
        }
    }

    /// Adds `bytes` (see ``feed(_:emit:)``).
    public mutating func feed(_ bytes: [UInt8], emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes { try feed($0, emit: emit) }
    }

    /// Emits the last chunk (anything pending, possibly shorter than the minimum) and resets the
    /// chunker for a new stream.
    public mutating func finish(emit: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        if pending.count > start {
            try pending.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        }
        pending.removeAll(keepingCapacity: true)
        start = 0
        scanned = 0
        hash = 0
    }

    /// The length of the chunk starting at `start` if its end is among the pending bytes; nil when
    /// more bytes are needed. Resumes from `scanned`/`hash`.
    private mutating func findCut() -> Int? {
        let available = pending.count - start
        let minimum = parameters.minimum, average = parameters.average, maximum = parameters.maximum
        if scanned < minimum {
            if available < minimum { return nil }
            scanned = minimum
        }
        var h = hash
        var i = scanned
        let hard = maskHard, easy = maskEasy
        let found: Int? = pending.withUnsafeBufferPointer { all -> Int? in
            GearTable.values.withUnsafeBufferPointer { gear -> Int? in
                let p = all.baseAddress! + start
                let normalEnd = min(available, average)
                while i < normalEnd {
                    h = (h << 1) &+ gear[Int(p[i])]
                    i &+= 1
                    if h & hard == 0 { return i }
                }
                let end = min(available, maximum)
                while i < end {
                    h = (h << 1) &+ gear[Int(p[i])]
                    i &+= 1
                    if h & easy == 0 { return i }
                }
                return nil
            }
        }
        if let found { return found }
        if i >= maximum { return maximum }
        scanned = i
        hash = h
        return nil
    }
}
