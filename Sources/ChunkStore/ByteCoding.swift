/// Little-endian appends for the binary structures (pack headers, index objects).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func id(_ v: BlobID) { bytes += v.bytes }
    mutating func raw(_ v: [UInt8]) { bytes += v }
}

/// Little-endian reads with bounds checks; `what` names the structure in errors.
struct ByteReader {
    private let bytes: [UInt8]
    private var at = 0
    let what: String

    init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    var atEnd: Bool { at == bytes.count }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, bytes.count - at >= n else {
            throw ChunkStoreError(.damaged, "\(what) ends early (needs \(n) bytes at offset \(at) of \(bytes.count))")
        }
        defer { at += n }
        return bytes[at..<at + n]
    }

    mutating func u8() throws -> UInt8 { try take(1).first! }
    mutating func u32() throws -> UInt32 { try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func id() throws -> BlobID { BlobID(bytes: try take(32))! }
    mutating func raw(_ n: Int) throws -> [UInt8] { Array(try take(n)) }
}
