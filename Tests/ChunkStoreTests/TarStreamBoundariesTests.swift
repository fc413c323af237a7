import Foundation
import Testing
@testable import ChunkStore

/// The tar parser against GNU tar's own output (gnu, pax, sparse), hand-made archives (base-256 sizes,
/// pax size records: checked against GNU tar's reading of them too) and bytes that are not tar.
@Suite struct TarStreamBoundariesTests {
    static let piecings: [[Int]] = [[1 << 20], [1, 511, 513, 4096, 100_003], [512], [7]]

    /// `tar -tvR` of `archive`: the member count and the stream offset just after the end-of-archive block.
    func gnuListing(_ archive: [UInt8]) throws -> (members: Int, end: Int64) {
        let dir = makeTempDir("tar-listing")
        defer { removeTempDir(dir) }
        try put(archive, dir, "a.tar")
        let listing = String(decoding: try runTar(["-tvR", "-f", dir + "/a.tar"]), as: UTF8.self).split(separator: "\n")
        let nuls = try #require(listing.last { $0.contains("Block of NULs") })
        let block = try #require(Int64(nuls.dropFirst("block ".count).prefix { $0 != ":" }))
        return (listing.filter { !$0.contains("Block of NULs") }.count, (block + 1) * 512)
    }

    /// Every regular file's content lies exactly at one member's data; the members and the end agree
    /// with GNU tar; the result does not depend on how the stream is split.
    func checkAgainstGNUTar(_ archive: [UInt8], files: [String: [UInt8]], skipContent: Set<String> = []) throws -> [ParsedMember] {
        let gnu = try gnuListing(archive)
        let whole = parseTar(archive)
        #expect(whole.failure == nil, "\(whole.failure ?? "")")
        #expect(whole.members.count == gnu.members)
        #expect(whole.parser.members == gnu.members)
        #expect(whole.end == gnu.end)
        var data: [[UInt8]: Int] = [:]
        for m in whole.members where m.size > 0 {
            #expect(m.headerStart % 512 == 0 && m.dataStart % 512 == 0 && m.dataStart > m.headerStart)
            data[Array(archive[Int(m.dataStart)..<Int(m.dataStart + m.size)]), default: 0] += 1
        }
        for (path, content) in files where !skipContent.contains(path) && !content.isEmpty {
            #expect(data[content] != nil, "the data of \(path) is at no member's data")
        }
        for pieces in Self.piecings {
            let split = parseTar(archive, pieces: pieces)
            #expect(split.members == whole.members, "fed in pieces \(pieces)")
            #expect(split.end == whole.end)
        }
        return whole.members
    }

    @Test func gnuFormat() throws {
        let dir = makeTempDir("tar-gnu")
        defer { removeTempDir(dir) }
        let files = try makeTree(dir, seed: 1)
        let archive = try tarStream(dir)
        let members = try checkAgainstGNUTar(archive, files: files)
        // GNU long names: an `L` header and its data before the member's own header.
        let long = try #require(files.keys.first { $0.hasSuffix("large.bin") && $0.utf8.count > 100 })
        let member = try #require(members.first { $0.size == Int64(files[long]!.count) })
        #expect(member.dataStart - member.headerStart >= 3 * 512)
        print("tar parser: gnu archive of \(archive.count) bytes, \(members.count) members")
    }

    @Test func paxFormat() throws {
        let dir = makeTempDir("tar-pax")
        defer { removeTempDir(dir) }
        let files = try makeTree(dir, seed: 2)
        let archive = try tarStream(dir, format: "pax")
        let members = try checkAgainstGNUTar(archive, files: files)
        // Every member has an `x` header (GNU tar writes atime and ctime there): headers are 3 blocks or more.
        #expect(members.allSatisfy { $0.dataStart - $0.headerStart >= 3 * 512 })
    }

    @Test func gnuSparseMembers() throws {
        let dir = makeTempDir("tar-sparse")
        defer { removeTempDir(dir) }
        var files = try makeTree(dir, seed: 3)
        // Ten islands of data in holes: more than the 4 map entries a header holds, so an extension block follows.
        let path = dir + "/holes.img"
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        for i in 0..<10 {
            try handle.seek(toOffset: UInt64(i) * 400_000)
            try handle.write(contentsOf: randomBytes(5000, seed: 900 + UInt64(i)))
        }
        try handle.close()
        files["holes.img"] = nil  // stored as its islands only
        files["zeros.img"] = nil  // has holes of its own, maybe
        let archive = try tarStream(dir, extra: ["--sparse"])
        _ = try checkAgainstGNUTar(archive, files: files)
        // The sparse member is there as type S with its extension block.
        #expect(stride(from: 0, to: archive.count, by: 512).contains { archive[$0 + 156] == UInt8(ascii: "S") && archive[$0 + 482] != 0 })
    }

    // MARK: hand-made archives

    /// A ustar header block (`sizeField`, when given, replaces the octal size).
    static func header(_ name: String, size: Int, type: Character = "0", sizeField: [UInt8]? = nil) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func field(_ at: Int, _ bytes: [UInt8]) { h.replaceSubrange(at..<at + bytes.count, with: bytes) }
        func octal(_ value: Int, width: Int) -> [UInt8] { Array(String(value, radix: 8).leftPadded(to: width - 1).utf8) + [0] }
        field(0, Array(name.utf8))
        field(100, octal(0o644, width: 8))
        field(108, octal(0, width: 8))
        field(116, octal(0, width: 8))
        field(124, sizeField ?? octal(size, width: 12))
        field(136, octal(1_700_000_000, width: 12))
        field(148, Array("        ".utf8))
        h[156] = type.asciiValue!
        field(257, Array("ustar".utf8) + [0])
        field(263, Array("00".utf8))
        let sum = h.reduce(0) { $0 + Int($1) }
        field(148, Array(String(sum, radix: 8).leftPadded(to: 6).utf8) + [0, 0x20])
        return h
    }

    /// A pax extended header (`type` x or g) with `records`.
    static func pax(_ records: [(String, String)], type: Character = "x") -> [UInt8] {
        var body: [UInt8] = []
        for (key, value) in records {
            let tail = " \(key)=\(value)\n"
            var length = tail.utf8.count + 1
            while String(length).utf8.count + tail.utf8.count != length { length += 1 }
            body += Array("\(length)\(tail)".utf8)
        }
        return header("PaxHeaders/x", size: body.count, type: type) + padded(body)
    }

    static func padded(_ data: [UInt8]) -> [UInt8] { data + [UInt8](repeating: 0, count: Int(TarStreamBoundaries.padding(Int64(data.count)))) }

    @Test func base256AndPaxSizes() throws {
        let a = randomBytes(70_000, seed: 5), b = randomBytes(80_000, seed: 6), c = textBytes(10, seed: 7)
        // a: GNU base-256 size; b: ustar size 0 overridden by a pax size record; then a global header; c plain.
        let base256: [UInt8] = [0x80] + [UInt8](repeating: 0, count: 7) + [0, 0x01, 0x11, 0x70]  // 70_000
        var archive = Self.header("a", size: 0, sizeField: base256) + Self.padded(a)
        archive += Self.pax([("path", "b"), ("size", "80000"), ("mtime", "1700000000.5")]) + Self.header("b", size: 0) + Self.padded(b)
        archive += Self.pax([("comment", "a global header")], type: "g")
        archive += Self.header("c", size: c.count) + Self.padded(c)
        archive += [UInt8](repeating: 0, count: 1024 * 5)

        // GNU tar reads it the same way.
        let dir = makeTempDir("tar-made")
        defer { removeTempDir(dir) }
        try put(archive, dir, "made.tar")
        #expect(try runTar(["-xOf", dir + "/made.tar"]) == a + b + c)

        let parsed = parseTar(archive, pieces: [100])
        #expect(parsed.failure == nil)
        let bStart: Int64 = 512 + 70_144  // a's header and padded data
        let cStart: Int64 = bStart + 1536 + 80_384  // b's pax header, its data block, its header, its padded data
        let expected = [
            ParsedMember(headerStart: 0, dataStart: 512, size: 70_000),
            ParsedMember(headerStart: bStart, dataStart: bStart + 1536, size: 80_000),
            ParsedMember(headerStart: cStart, dataStart: cStart + 1536, size: 10),  // the global header is c's
        ]
        #expect(parsed.members == expected)
        #expect(parsed.end == cStart + 1536 + 512 + 512)
    }

    @Test func numericFields() {
        #expect(TarStreamBoundaries.octal(ArraySlice(Array("0000644\0".utf8))) == 0o644)
        #expect(TarStreamBoundaries.octal(ArraySlice(Array("  1234 \0".utf8))) == 0o1234)
        #expect(TarStreamBoundaries.octal(ArraySlice(Array("17\0garbage".utf8))) == 0o17)
        #expect(TarStreamBoundaries.octal(ArraySlice([UInt8](repeating: 0, count: 8))) == 0)
        #expect(TarStreamBoundaries.octal(ArraySlice(Array("0000789\0".utf8))) == nil)
        #expect(TarStreamBoundaries.octal(ArraySlice(Array("12 34\0".utf8))) == nil)
        #expect(TarStreamBoundaries.size(ArraySlice([0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0])) == 1 << 33)
        #expect(TarStreamBoundaries.size(ArraySlice([0xFF] + [UInt8](repeating: 0xFF, count: 11))) == nil)
        #expect(TarStreamBoundaries.size(ArraySlice([0x80] + [UInt8](repeating: 0xFF, count: 11))) == nil)  // beyond Int64
    }

    // MARK: not tar

    @Test func garbageIsRefusedAtOnce() {
        for (label, bytes) in [("random", randomBytes(100_000, seed: 8)), ("text", textBytes(100_000, seed: 9)), ("zeros then text", [UInt8](repeating: 0x20, count: 512) + textBytes(1000, seed: 1))] {
            let parsed = parseTar(bytes, pieces: [333])
            #expect(parsed.members.isEmpty, "\(label)")
            #expect(parsed.failure?.contains("at byte 0") == true, "\(label): \(parsed.failure ?? "no failure")")
            #expect(parsed.parser.hasFailed)
            #expect(parsed.parser.offset == Int64(bytes.count))
        }
    }

    @Test func damageInTheMiddleIsNamed() throws {
        let dir = makeTempDir("tar-damaged")
        defer { removeTempDir(dir) }
        try makeTree(dir, seed: 4)
        var archive = try tarStream(dir)
        let members = parseTar(archive).members
        let victim = members[members.count / 2]
        archive[Int(victim.headerStart) + 10] ^= 0x55  // inside the name: the checksum no longer matches
        let parsed = parseTar(archive, pieces: [4096])
        #expect(parsed.members == Array(members.prefix(members.count / 2)))
        #expect(parsed.end == nil)
        #expect(parsed.failure?.contains("at byte \(victim.headerStart)") == true, "\(parsed.failure ?? "no failure")")
        // A bad size field.
        var badSize = Self.header("x", size: 5)
        badSize.replaceSubrange(124..<136, with: Array("00000000009\0".utf8))
        let sum = badSize.enumerated().reduce(0) { $0 + Int((148..<156).contains($1.offset) ? 0x20 : $1.element) }
        badSize.replaceSubrange(148..<156, with: Array(String(sum, radix: 8).leftPadded(to: 6).utf8) + [0, 0x20])
        #expect(parseTar(badSize).failure?.contains("size field") == true)
        // A malformed pax record.
        var pax = Self.pax([("size", "12")])
        pax[512] = UInt8(ascii: "9")  // the record's length now runs past the header's data
        #expect(parseTar(pax + Self.header("y", size: 0)).failure?.contains("malformed record") == true)
    }
}

extension String {
    /// Left-padded with zeros to `width`.
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
