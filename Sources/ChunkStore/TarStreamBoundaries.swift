/// Follows a tar stream as its bytes go by and reports where its members' headers and data are,
/// without keeping the data (only the current 512-byte header block and pax records are copied).
///
/// Understands ustar, GNU and pax archives: 512-byte header blocks with their checksum; the size field in
/// octal or GNU base-256; pax extended headers (`x`, `g`: their `size` record overrides the header's) and
/// GNU long names (`L`, `K`), whose data is metadata of the member that follows; old GNU sparse members
/// (`S`) and their extension blocks; data padded to 512 bytes; the end-of-archive zero block (anything
/// after it, such as the record padding, is passed over). Links, devices, folders and FIFOs have no data.
///
/// Call ``advance(_:)`` with the stream's bytes, in order, until it has consumed them; each call stops at
/// the next ``Event``:
///
/// ```swift
/// var rest = buffer
/// while !rest.isEmpty {
///     let step = parser.advance(rest)   // step.consumed bytes pass, then step.event (if any) happens
///     rest = UnsafeRawBufferPointer(rebasing: rest[step.consumed...])
/// }
/// ```
///
/// A stream that is not tar (a bad checksum, a size that is not a number, a malformed pax record) gives
/// ``Event/failed(_:)`` once; after it, and after ``Event/end``, every byte is passed with no event.
public struct TarStreamBoundaries: Sendable {
    /// What happens at a point of the stream.
    public enum Event: Sendable, Equatable {
        /// A member's first header block starts here (with any `x`, `g`, `L`, `K` headers before its own),
        /// or the end-of-archive block: the previous member's data and padding ended just before.
        case headerStart
        /// The member's header blocks ended here; its data (`size` bytes, then padding to 512) follows.
        case dataStart(size: Int64)
        /// The end-of-archive block ended here; nothing after it is parsed.
        case end
        /// The bytes are not (or no longer) tar, for the reason given (which names the byte offset).
        case failed(String)
    }

    /// The tar block size.
    public static let blockSize = 512
    /// Pax extended headers longer than this are refused (the stream is no longer followed).
    public static let paxLimit = 1 << 20

    private enum State: Sendable {
        /// Collecting a header block (`groupOpen`: ``Event/headerStart`` was given for its group).
        case header
        /// Collecting an old GNU sparse extension block of a member of `size` data bytes.
        case sparseExtension(size: Int64)
        /// Passing the data of an `x`, `g`, `L` or `K` header (`pax`: kept for its records), then `padding`.
        case metadata(type: UInt8, remaining: Int64, padding: Int64)
        /// Passing `remaining` bytes (data and padding; header blocks follow).
        case skip(remaining: Int64)
        case end
        case failed
    }

    private var state = State.header
    private var groupOpen = false
    private var block = [UInt8](repeating: 0, count: 512)
    private var blockFill = 0
    private var pax: [UInt8] = []
    /// `size` from the pending `x` header (next member only) and from `g` headers (every later member).
    private var localSize: Int64?
    private var globalSize: Int64?
    /// Bytes consumed so far.
    public private(set) var offset: Int64 = 0
    /// Members whose headers were read.
    public private(set) var members = 0

    /// A parser at the start of a stream.
    public init() {}

    /// Whether the stream was found not to be tar.
    public var hasFailed: Bool {
        if case .failed = state { return true }
        return false
    }

    /// Consumes the first `consumed` bytes of `bytes` and reports the event that happens right after
    /// them, or consumes all of them (`event` nil). `consumed` may be 0 when an event is reported.
    public mutating func advance(_ bytes: UnsafeRawBufferPointer) -> (consumed: Int, event: Event?) {
        let count = bytes.count
        var i = 0
        defer { offset += Int64(i) }
        while i < count {
            switch state {
            case .end, .failed:
                i = count
            case .skip(let remaining):
                let take = Int(min(remaining, Int64(count - i)))
                i += take
                state = remaining == Int64(take) ? .header : .skip(remaining: remaining - Int64(take))
            case .metadata(let type, let remaining, let padding):
                let take = Int(min(remaining, Int64(count - i)))
                if type == UInt8(ascii: "x") || type == UInt8(ascii: "g") {
                    pax.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<i + take]))
                }
                i += take
                if remaining > Int64(take) {
                    state = .metadata(type: type, remaining: remaining - Int64(take), padding: padding)
                    continue
                }
                if let problem = readPax(type: type) {
                    return fail(problem, consumed: &i)
                }
                state = padding > 0 ? .skip(remaining: padding) : .header
            case .header, .sparseExtension:
                if case .header = state, !groupOpen, blockFill == 0 {
                    groupOpen = true
                    return (i, .headerStart)
                }
                let take = min(Self.blockSize - blockFill, count - i)
                block.withUnsafeMutableBytes { b in
                    UnsafeMutableRawBufferPointer(rebasing: b[blockFill..<blockFill + take]).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: bytes[i..<i + take]))
                }
                blockFill += take
                i += take
                guard blockFill == Self.blockSize else { continue }
                blockFill = 0
                let event: Event?
                if case .sparseExtension(let size) = state {
                    // Byte 504 of an extension block: whether another one follows.
                    event = block[504] != 0 ? nil : dataStart(size)
                } else {
                    event = readHeader(at: offset + Int64(i) - 512)
                }
                if let event {
                    if case .failed(let problem) = event { return fail(problem, consumed: &i) }
                    return (i, event)
                }
            }
        }
        return (i, nil)
    }

    // MARK: header blocks

    /// Reads the header block just collected; returns the event it makes, if any.
    private mutating func readHeader(at start: Int64) -> Event? {
        if block.allSatisfy({ $0 == 0 }) {
            state = .end
            return .end
        }
        guard let stored = Self.octal(block[148..<156]) else {
            return .failed("the block at byte \(start) is not a tar header (its checksum field is not a number)")
        }
        var unsigned: Int64 = 0, signed: Int64 = 0
        for (n, b) in block.enumerated() {
            let v = (148..<156).contains(n) ? 0x20 : b
            unsigned += Int64(v)
            signed += Int64(Int8(bitPattern: v))
        }
        guard stored == unsigned || stored == signed else {
            return .failed("the block at byte \(start) is not a tar header (checksum \(stored), computed \(unsigned))")
        }
        guard let fieldSize = Self.size(block[124..<136]), fieldSize >= 0 else {
            return .failed("the tar header at byte \(start) has a size field that is not a number")
        }
        let type = block[156]
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "g"):
            guard fieldSize <= Self.paxLimit else {
                return .failed("the pax header at byte \(start) holds \(fieldSize) bytes, more than the \(Self.paxLimit) followed")
            }
            pax.removeAll(keepingCapacity: true)
            state = .metadata(type: type, remaining: fieldSize, padding: Self.padding(fieldSize))
            return nil
        case UInt8(ascii: "L"), UInt8(ascii: "K"):
            state = .metadata(type: type, remaining: fieldSize, padding: Self.padding(fieldSize))
            return nil
        default:
            members += 1
            let size = localSize ?? globalSize ?? fieldSize
            localSize = nil
            // Hard links, symlinks, devices, folders and FIFOs have no data whatever their size says.
            if (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(type) { return dataStart(0) }
            // Old GNU sparse: byte 482 says whether extension blocks follow the header.
            if type == UInt8(ascii: "S"), block[482] != 0 {
                state = .sparseExtension(size: size)
                return nil
            }
            return dataStart(size)
        }
    }

    private mutating func dataStart(_ size: Int64) -> Event {
        groupOpen = false
        state = size > 0 ? .skip(remaining: size + Self.padding(size)) : .header
        return .dataStart(size: size)
    }

    private mutating func fail(_ problem: String, consumed i: inout Int) -> (consumed: Int, event: Event?) {
        state = .failed
        pax = []
        return (i, .failed(problem))
    }

    /// Takes the `size` record (if any) of the pax header just read. Returns a problem, or nil.
    private mutating func readPax(type: UInt8) -> String? {
        guard type == UInt8(ascii: "x") || type == UInt8(ascii: "g") else { return nil }
        defer { pax.removeAll(keepingCapacity: true) }
        var at = 0
        // Records: "<length> <keyword>=<value>\n", the length counting the whole record.
        while at < pax.count, pax[at] != 0 {
            var length = 0, digits = 0
            var j = at
            while j < pax.count, pax[j] >= UInt8(ascii: "0"), pax[j] <= UInt8(ascii: "9"), digits < 18 {
                length = length * 10 + Int(pax[j] - UInt8(ascii: "0"))
                j += 1
                digits += 1
            }
            guard digits > 0, j < pax.count, pax[j] == UInt8(ascii: " "), length > j - at + 1, at + length <= pax.count,
                pax[at + length - 1] == UInt8(ascii: "\n"), let equals = pax[(j + 1)..<(at + length)].firstIndex(of: UInt8(ascii: "="))
            else {
                return "a pax header before byte \(offset) has a malformed record at its byte \(at)"
            }
            if pax[(j + 1)..<equals].elementsEqual("size".utf8) {
                let value = pax[(equals + 1)..<(at + length - 1)]
                var size: Int64?
                if !value.isEmpty {
                    guard value.count <= 18, value.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                        return "a pax header before byte \(offset) has a size record that is not a number"
                    }
                    size = value.reduce(Int64(0)) { $0 * 10 + Int64($1 - UInt8(ascii: "0")) }
                }
                if type == UInt8(ascii: "x") { localSize = size } else { globalSize = size }
            }
            at += length
        }
        return nil
    }

    // MARK: numbers

    /// Padding after `size` bytes of data, to the next block.
    static func padding(_ size: Int64) -> Int64 { (512 - size % 512) % 512 }

    /// A numeric field: octal (leading spaces, ended by a NUL or a space), or GNU base-256 (first byte
    /// 0x80, then big-endian). Nil when it is neither, or negative, or too large.
    static func size(_ field: ArraySlice<UInt8>) -> Int64? {
        guard let first = field.first else { return nil }
        if first == 0x80 {
            var value: Int64 = 0
            for b in field.dropFirst() {
                guard value <= Int64.max >> 8 else { return nil }
                value = value << 8 | Int64(b)
            }
            return value
        }
        if first == 0xFF { return nil }  // base-256 negative
        return octal(field)
    }

    /// An octal field as tar writes it: leading spaces, digits, trailing spaces; a NUL ends it (what
    /// follows is ignored). An empty field is 0.
    static func octal(_ field: ArraySlice<UInt8>) -> Int64? {
        var value: Int64 = 0
        var seenDigit = false, trailing = false
        for b in field {
            switch b {
            case 0:
                return value
            case UInt8(ascii: " "):
                if seenDigit { trailing = true }
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard !trailing, value <= Int64.max >> 3 else { return nil }
                value = value << 3 | Int64(b - UInt8(ascii: "0"))
                seenDigit = true
            default:
                return nil
            }
        }
        return value
    }
}
