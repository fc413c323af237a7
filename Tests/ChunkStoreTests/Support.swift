import Foundation
import Testing
@testable import ChunkStore

/// A fresh temp folder (removed by the caller with `removeTempDir`).
func makeTempDir(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "chunkstore-\(tag)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeTempDir(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// Deterministic pseudo-random bytes (SplitMix64), fast enough in a debug build.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var words = [UInt64](repeating: 0, count: (count + 7) / 8)
    words.withUnsafeMutableBufferPointer { w in
        for i in 0..<w.count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            w[i] = z ^ (z >> 31)
        }
    }
    return words.withUnsafeBytes { Array($0.prefix(count)) }
}

/// Compressible bytes: lines of text-like records.
func textBytes(_ count: Int, seed: Int) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(count + 100)
    var i = seed
    while out.count < count {
        out += Array("INSERT INTO events VALUES (\(i), 'service-\(i % 17)', 'state changed to running', \(i * 7919 % 100_003));\n".utf8)
        i += 1
    }
    return Array(out.prefix(count))
}

/// Small chunks and packs so that tests see many of each.
let testChunker = try! ChunkerParameters(minimum: 64 << 10, average: 256 << 10, maximum: 1 << 20)
let testPackSize = 4 << 20

/// A folder repository with cheap scrypt.
func makeRepository(_ dir: String, chunker: ChunkerParameters = testChunker, passphrase: String = "correct horse") throws -> Repository {
    try Repository.initialize(store: try FolderStore(root: dir), passphrase: passphrase, label: "test", chunker: chunker, kdf: .testing)
}

/// Writes `bytes` as one artifact, fed in buffers of varying sizes.
func writeArtifact(_ session: ChunkedWriter, _ name: String, _ bytes: [UInt8], step: Int = 100_003, layout: ArtifactLayout = .stream) throws -> ArtifactRecord {
    try writeArtifactKeepingWriter(session, name, bytes, step: step, layout: layout).record
}

/// ``writeArtifact(_:_:_:step:layout:)``, also returning the writer (for its layout counters).
func writeArtifactKeepingWriter(
    _ session: ChunkedWriter, _ name: String, _ bytes: [UInt8], step: Int = 100_003, layout: ArtifactLayout = .stream
) throws -> (record: ArtifactRecord, writer: ArtifactWriter) {
    let artifact = try session.artifact(name: name, layout: layout)
    var offset = 0
    var n = 0
    while offset < bytes.count {
        let size = min(bytes.count - offset, step + (n % 7) * 1031)
        try bytes.withUnsafeBytes { try artifact.write(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + size])) }
        offset += size
        n += 1
    }
    return (try artifact.finish(), artifact)
}

/// Restores into memory.
func restore(_ reader: ChunkedReader, _ record: ArtifactRecord) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(Int(record.size))
    try reader.restore(record) { out += $0 }
    return out
}

/// The chunks of `bytes` as (length, SHA-256-ish id) pairs, fed in `pieces`.
func chunkList(_ bytes: [UInt8], parameters: ChunkerParameters, pieces: [Int]) -> [[UInt8]] {
    var chunker = Chunker(parameters: parameters)
    var chunks: [[UInt8]] = []
    var offset = 0
    var p = 0
    bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let size = min(raw.count - offset, pieces[p % pieces.count])
            chunker.feed(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size])) { chunks.append(Array($0)) }
            offset += size
            p += 1
        }
    }
    chunker.finish { chunks.append(Array($0)) }
    return chunks
}
