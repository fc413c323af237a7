import DataTools
import Foundation
import Testing

/// Streaming zstd as WAL segments use it: a whole frame handed over at once.
struct ZstdStreamTests {
    /// 16 MiB that ends exactly as an output buffer fills (a WAL segment of zeros compresses to a few
    /// hundred bytes): decompressing it whole, or in pieces of any size, ends cleanly with every byte.
    @Test(arguments: [0, 1, 7, 100])
    func frameEndingAsTheOutputFills(piece: Int) throws {
        let original = [UInt8](repeating: 0, count: 16 << 20)
        var compressed: [UInt8] = []
        let compressor = try ZstdCompressor(level: 3) { compressed.append(contentsOf: $0) }
        try original.withUnsafeBytes { try compressor.compress($0) }
        try compressor.finish()
        #expect(compressed.count < 4096)

        var total = 0, nonZero = false
        let decompressor = try ZstdDecompressor { bytes in
            total += bytes.count
            if bytes.contains(where: { $0 != 0 }) { nonZero = true }
        }
        let step = piece == 0 ? compressed.count : piece
        var i = 0
        while i < compressed.count {
            let j = min(compressed.count, i + step)
            try compressed[i..<j].withUnsafeBytes { try decompressor.decompress($0) }
            i = j
        }
        try decompressor.finish()
        #expect(total == original.count && !nonZero)
    }
}
