import Crypto
import Foundation
import Testing
@testable import ChunkStore

@Suite struct ChunkerTests {
    @Test func sameBoundariesHoweverFed() {
        let data = randomBytes(8 << 20, seed: 1)
        let whole = chunkList(data, parameters: testChunker, pieces: [data.count])
        #expect(whole.count > 8)
        #expect(whole.reduce(0) { $0 + $1.count } == data.count)
        for pieces in [[4096], [1_000_003], [1, 7, 65536, 3, 250_000], [1 << 20, 1], [17]] {
            let other = chunkList(data, parameters: testChunker, pieces: pieces)
            #expect(other == whole, "fed in pieces \(pieces)")
        }
    }

    @Test func sizesWithinBounds() {
        let data = randomBytes(16 << 20, seed: 2)
        let chunks = chunkList(data, parameters: testChunker, pieces: [300_000])
        for c in chunks.dropLast() {
            #expect(c.count >= testChunker.minimum && c.count <= testChunker.maximum)
        }
        #expect(chunks.last!.count <= testChunker.maximum)
        let average = data.count / chunks.count
        print("chunker: \(chunks.count) chunks of 16 MiB with average \(average) bytes (target \(testChunker.average))")
        #expect(average > testChunker.average / 2 && average < testChunker.average * 2)
        // All zeros (no cut point ever): forced cuts at the maximum.
        let zeros = chunkList([UInt8](repeating: 0, count: 3 << 20), parameters: testChunker, pieces: [123_457])
        #expect(zeros.map(\.count) == [1 << 20, 1 << 20, 1 << 20])
        // Empty input: no chunk.
        #expect(chunkList([], parameters: testChunker, pieces: [1]).isEmpty)
    }

    @Test func insertionNearStartKeepsMostChunks() {
        let original = randomBytes(32 << 20, seed: 3)
        var edited = original
        edited.insert(contentsOf: randomBytes(100, seed: 4), at: 1000)
        let a = chunkList(original, parameters: .standard, pieces: [1 << 20])
        let b = chunkList(edited, parameters: .standard, pieces: [1 << 20])
        let known = Set(a.map { Array(SHA256.hash(data: $0)) })
        let reused = b.filter { known.contains(Array(SHA256.hash(data: $0))) }.reduce(0) { $0 + $1.count }
        let fraction = Double(reused) / Double(edited.count)
        print("chunker: 100 bytes inserted at 1000 of 32 MiB: \(b.count) chunks, \(String(format: "%.1f", fraction * 100))% of bytes in unchanged chunks")
        #expect(fraction >= 0.9)
    }

    /// The cut points as docs/repository-format.md describes them, one byte at a time: the chunker (two
    /// bytes per step) must cut exactly there, or nothing written before would dedup.
    @Test func cutsWhereTheFormatSays() {
        func reference(_ data: [UInt8], _ p: ChunkerParameters) -> [Int] {
            let gear = GearTable.values
            let bits = p.average.trailingZeroBitCount
            let hard = ~UInt64(0) << UInt64(64 - (bits + 2)), easy = ~UInt64(0) << UInt64(64 - (bits - 2))
            var lengths: [Int] = []
            var start = 0
            while start < data.count {
                let remaining = data.count - start
                var length = min(remaining, p.maximum)
                var h: UInt64 = 0
                var i = p.minimum
                while i < min(remaining, p.maximum) {
                    h = (h << 1) &+ gear[Int(data[start + i])]
                    let mask = i < p.average ? hard : easy
                    i += 1
                    if h & mask == 0 {
                        length = i
                        break
                    }
                }
                lengths.append(length)
                start += length
            }
            return lengths
        }
        let data = randomBytes(5 << 20, seed: 7) + textBytes(2 << 20, seed: 8) + [UInt8](repeating: 0, count: 3 << 20) + randomBytes(777, seed: 9)
        for parameters in [testChunker, .standard] {
            let expected = reference(data, parameters)
            #expect(expected.count >= 5)
            for pieces in [[1 << 20], [1, 2, 3, 65_537]] {
                #expect(chunkList(data, parameters: parameters, pieces: pieces).map(\.count) == expected, "\(parameters), pieces \(pieces)")
            }
        }
    }

    /// ``Chunker/nextCut(in:)`` (the writer's way, the caller keeping the bytes) cuts where feeding does.
    @Test func scanningAgreesWithFeeding() {
        let data = randomBytes(6 << 20, seed: 5)
        let fed = chunkList(data, parameters: testChunker, pieces: [100_000])
        var chunker = Chunker(parameters: testChunker)
        var lengths: [Int] = []
        var current = 0
        let pieces = [1, 4095, 70_000, 1 << 20, 64 << 10]
        data.withUnsafeBytes { raw in
            var offset = 0, p = 0
            while offset < raw.count {
                let size = min(raw.count - offset, pieces[p % pieces.count])
                var rest = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size])
                offset += size
                p += 1
                while !rest.isEmpty {
                    guard let n = chunker.nextCut(in: rest) else {
                        current += rest.count
                        #expect(chunker.chunkLength == current)
                        break
                    }
                    lengths.append(current + n)
                    current = 0
                    rest = UnsafeRawBufferPointer(rebasing: rest[n...])
                }
            }
        }
        if current > 0 { lengths.append(current) }
        #expect(lengths == fed.map(\.count))
    }

    /// A forced cut emits what is pending, even below the minimum, and the chunker starts afresh.
    @Test func forcedCut() {
        let data = randomBytes(4 << 20, seed: 6)
        var chunker = Chunker(parameters: testChunker)
        var chunks: [[UInt8]] = []
        chunker.feed(Array(data[..<10_000])) { chunks.append(Array($0)) }
        #expect(chunks.isEmpty)
        chunker.cut { chunks.append(Array($0)) }
        #expect(chunks == [Array(data[..<10_000])])
        chunker.cut { chunks.append(Array($0)) }  // nothing pending: no empty chunk
        #expect(chunks.count == 1)
        chunker.feed(Array(data[10_000...])) { chunks.append(Array($0)) }
        chunker.finish { chunks.append(Array($0)) }
        #expect(Array(chunks.dropFirst()) == chunkList(Array(data[10_000...]), parameters: testChunker, pieces: [1 << 20]))
        // Scanning: startChunk() does the same.
        var scanner = Chunker(parameters: testChunker)
        data.withUnsafeBytes { raw in
            #expect(scanner.nextCut(in: UnsafeRawBufferPointer(rebasing: raw[..<10_000])) == nil)
            scanner.startChunk()
            #expect(scanner.chunkLength == 0)
            #expect(scanner.nextCut(in: UnsafeRawBufferPointer(rebasing: raw[10_000...])) == chunks[1].count)
        }
    }

    @Test func gearTableIsFixed() {
        // A format constant: these values must never change (see GearTable).
        #expect(GearTable.values.count == 256)
        #expect(Set(GearTable.values).count == 256)
        let first = GearTable.values[0]
        #expect(first == Array(SHA256.hash(data: Array("automate-chunkstore gear v1".utf8) + [0, 0, 0, 0]))[0..<8].reduce(0) { $0 << 8 | UInt64($1) })
    }

    @Test func invalidParametersRefused() {
        #expect(throws: ChunkStoreError.self) { try ChunkerParameters(minimum: 1000, average: 3000, maximum: 8000) }
        #expect(throws: ChunkStoreError.self) { try ChunkerParameters(minimum: 4096, average: 2048, maximum: 8192) }
    }
}
