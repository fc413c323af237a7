import Foundation
import Testing
@testable import ChunkStore

/// GNU tar's output for `arguments` (`-cf -` and the rest), through Foundation's Process.
func runTar(_ arguments: [String]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ChunkStoreError(.misuse, "tar \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
    return [UInt8](data)
}

/// A tar stream of `dir`'s contents, names sorted (stable between runs).
func tarStream(_ dir: String, format: String = "gnu", extra: [String] = []) throws -> [UInt8] {
    try runTar(["--sort=name", "--format=\(format)", "--numeric-owner"] + extra + ["-cf", "-", "-C", dir, "."])
}

/// Writes `bytes` to `dir/relative`, making its folders.
func put(_ bytes: [UInt8], _ dir: String, _ relative: String) throws {
    let path = dir + "/" + relative
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// A folder like a service's data: small text files, large random files (some with names longer than
/// 100 bytes), a file just under the test chunker's minimum, a symlink, and a mostly-zero ("sparse-ish")
/// file. Returns the regular files' contents by relative path.
@discardableResult
func makeTree(_ dir: String, seed: UInt64) throws -> [String: [UInt8]] {
    var files: [String: [UInt8]] = [:]
    for i in 0..<40 {
        files["small/s\(i).txt"] = textBytes(100 + i * 97, seed: Int(seed) * 1000 + i)
    }
    let long = String(repeating: "a-rather-long-folder-name-", count: 3) + "/" + String(repeating: "file-", count: 25)
    #expect(long.utf8.count > 100)
    for i in 0..<6 {
        files["large/l\(i).bin"] = randomBytes(150_000 + i * 90_000, seed: seed * 100 + UInt64(i))
    }
    files[long + "large.bin"] = randomBytes(200_000, seed: seed * 100 + 50)
    files[long + "small.txt"] = textBytes(900, seed: Int(seed) + 77)
    files["medium.bin"] = randomBytes(testChunker.minimum - 1000, seed: seed * 100 + 60)
    var zeros = [UInt8](repeating: 0, count: 600_000)
    for at in stride(from: 0, to: zeros.count, by: 150_000) { zeros.replaceSubrange(at..<at + 3000, with: randomBytes(3000, seed: UInt64(at) + seed)) }
    files["zeros.img"] = zeros
    for (path, bytes) in files { try put(bytes, dir, path) }
    try FileManager.default.createSymbolicLink(atPath: dir + "/small/link", withDestinationPath: "s1.txt")
    return files
}

/// One member as the parser saw it: where its headers start, where its data starts, its data size.
struct ParsedMember: Equatable {
    var headerStart: Int64
    var dataStart: Int64
    var size: Int64
}

/// Runs the parser over `bytes` fed in `pieces` (cycled); returns the members, where the end block
/// ended (if seen) and the failure (if any).
func parseTar(_ bytes: [UInt8], pieces: [Int] = [65_536]) -> (members: [ParsedMember], end: Int64?, failure: String?, parser: TarStreamBoundaries) {
    var parser = TarStreamBoundaries()
    var members: [ParsedMember] = []
    var headerStart: Int64 = -1
    var end: Int64?
    var failure: String?
    var offset = 0, p = 0
    bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let size = min(raw.count - offset, pieces[p % pieces.count])
            p += 1
            var rest = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size])
            var at = Int64(offset)
            offset += size
            while !rest.isEmpty {
                let step = parser.advance(rest)
                at += Int64(step.consumed)
                rest = UnsafeRawBufferPointer(rebasing: rest[step.consumed...])
                switch step.event {
                case .headerStart: headerStart = at
                case .dataStart(let size): members.append(ParsedMember(headerStart: headerStart, dataStart: at, size: size))
                case .end: end = at
                case .failed(let why): failure = why
                case nil: break
                }
                #expect(parser.offset == at)
            }
        }
    }
    return (members, end, failure, parser)
}

/// Where the record's chunks start, as stream offsets (the last entry is the artifact's size).
func chunkStarts(_ record: ArtifactRecord) -> Set<Int64> {
    var starts: Set<Int64> = [0]
    var at: Int64 = 0
    for b in record.blobs {
        at += Int64(b.size)
        starts.insert(at)
    }
    return starts
}
