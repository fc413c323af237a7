import Crypto

/// The 256 random 64-bit values FastCDC's gear hash adds per input byte.
///
/// - Important: A format constant. Entry `i` is the first 8 bytes (big-endian) of
///   SHA-256("automate-chunkstore gear v1" || UInt32(i) big-endian). Changing the table (or the way it
///   is derived) moves every chunk boundary, so nothing written before would dedup against anything
///   written after. A new table needs a new repository format version.
enum GearTable {
    static let values: [UInt64] = (0..<256).map { (i: Int) -> UInt64 in
        var input = Array("automate-chunkstore gear v1".utf8)
        input += [UInt8(truncatingIfNeeded: i >> 24), UInt8(truncatingIfNeeded: i >> 16), UInt8(truncatingIfNeeded: i >> 8), UInt8(truncatingIfNeeded: i)]
        let digest = Array(SHA256.hash(data: input))
        return digest[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}
