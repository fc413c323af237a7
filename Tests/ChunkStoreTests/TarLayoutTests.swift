import Foundation
import Testing
@testable import ChunkStore

/// ``ArtifactLayout/tar`` through a whole session: real GNU tar streams restore byte for byte, large
/// members are chunked on their own, a rewritten large file costs about its own size in a second
/// backup, and a stream that is not tar falls back to content-defined chunking.
@Suite struct TarLayoutTests {
    /// Cuts the layout must have made in `archive`: before each large member's headers, between them and
    /// its data, after its data and padding.
    func expectedCuts(_ archive: [UInt8]) -> (cuts: Set<Int64>, large: Int, members: Int) {
        let members = parseTar(archive).members
        var cuts: Set<Int64> = []
        var large = 0
        for m in members where m.size >= Int64(testChunker.minimum) {
            large += 1
            cuts.formUnion([m.headerStart, m.dataStart, m.dataStart + m.size + TarStreamBoundaries.padding(m.size)])
        }
        return (cuts, large, members.count)
    }

    @Test(arguments: ["gnu", "pax"]) func roundTripWithCutsAroundLargeMembers(format: String) throws {
        let dir = makeTempDir("tarlayout-\(format)")
        defer { removeTempDir(dir) }
        try makeTree(dir + "/tree", seed: 11)
        let archive = try tarStream(dir + "/tree", format: format)
        let repo = try makeRepository(dir + "/repo")
        let session = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let (record, writer) = try writeArtifactKeepingWriter(session, "files.tar", archive, layout: .tar)
        try session.commit()
        #expect(writer.layoutProblem == nil, "\(writer.layoutProblem ?? "")")
        let expected = expectedCuts(archive)
        #expect(writer.tarMembers == expected.members)
        #expect(expected.large == 8)  // six large files, the long-named one and the zeros
        let starts = chunkStarts(record)
        #expect(expected.cuts.isSubset(of: starts), "missing cuts at \(expected.cuts.subtracting(starts).sorted())")
        #expect(writer.layoutCuts >= expected.large * 2)
        // Small members are still chunked together: far fewer chunks than members.
        let smallChunks = record.blobs.filter { $0.size < testChunker.minimum && $0.size > 4096 }.count
        print("tar layout (\(format)): \(archive.count) bytes, \(expected.members) members, \(record.blobs.count) chunks, \(writer.layoutCuts) forced cuts, \(smallChunks) short chunks")
        #expect(record.blobs.count < expected.members)

        #expect(try restore(try ChunkedReader(repository: repo), record) == archive)
        // However the stream is fed, the same chunks.
        let again = try writeArtifact(session, "files.tar again", archive, step: 4096, layout: .tar)
        #expect(again.blobs == record.blobs)
        #expect(again.newBytes == 0)
    }

    @Test func rewrittenLargeFileCostsItsOwnSize() throws {
        let dir = makeTempDir("tarlayout-dedup")
        defer { removeTempDir(dir) }
        let tree = dir + "/tree"
        for i in 0..<12 { try put(randomBytes(300_000, seed: 200 + UInt64(i)), tree, "data/big\(i).bin") }
        for i in 0..<60 { try put(textBytes(2000 + 37 * i, seed: 300 + i), tree, "conf/c\(i).txt") }
        let first = try tarStream(tree)
        // Rewrite one large file in place (same size, new bytes; its folder's mtime stays).
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: tree + "/data/big5.bin"))
        try handle.write(contentsOf: randomBytes(300_000, seed: 999))
        try handle.close()
        let second = try tarStream(tree)
        #expect(first.count == second.count)

        var added: [ArtifactLayout: Int64] = [:]
        for layout in [ArtifactLayout.tar, .stream] {
            let repo = try makeRepository(dir + "/repo-\(layout)")
            let s1 = try ChunkedWriter(repository: repo, packSize: testPackSize)
            _ = try writeArtifact(s1, "day1", first, layout: layout)
            try s1.commit()
            let s2 = try ChunkedWriter(repository: repo, packSize: testPackSize)
            let record = try writeArtifact(s2, "day2", second, layout: layout)
            try s2.commit()
            added[layout] = record.newBytes
            #expect(try restore(try ChunkedReader(repository: repo), record) == second)
        }
        print("tar layout: one 300000-byte file of \(second.count) rewritten: \(added[.tar]!) new bytes with the tar layout, \(added[.stream]!) without")
        // The file, its header chunk, nothing of its neighbours.
        #expect(added[.tar]! >= 300_000 && added[.tar]! <= 300_000 + 2048)
        #expect(added[.stream]! > added[.tar]! * 3 / 2)
    }

    @Test func notTarFallsBackToContentChunking() throws {
        let dir = makeTempDir("tarlayout-garbage")
        defer { removeTempDir(dir) }
        let repo = try makeRepository(dir + "/repo")
        let session = try ChunkedWriter(repository: repo, packSize: testPackSize)
        let garbage = randomBytes(3 << 20, seed: 400)
        let (record, writer) = try writeArtifactKeepingWriter(session, "garbage", garbage, layout: .tar)
        let plain = try writeArtifact(session, "garbage as a stream", garbage)
        try session.commit()
        print("tar layout on random bytes: \(writer.layoutProblem ?? "followed?")")
        #expect(writer.layoutProblem?.contains("at byte 0") == true)
        #expect(writer.layoutCuts == 0)
        #expect(record.blobs == plain.blobs)  // exactly the content-defined chunks
        #expect(try restore(try ChunkedReader(repository: repo), record) == garbage)

        // A tar stream damaged in the middle: cuts up to there, content chunking after, nothing lost.
        try makeTree(dir + "/tree", seed: 12)
        var archive = try tarStream(dir + "/tree")
        let members = parseTar(archive).members
        let victim = members[members.count - 3]
        archive[Int(victim.headerStart) + 148] ^= 0x01  // the checksum field itself
        let (damaged, damagedWriter) = try writeArtifactKeepingWriter(session, "damaged.tar", archive, layout: .tar)
        try session.commit()
        #expect(damagedWriter.layoutProblem?.contains("at byte \(victim.headerStart)") == true, "\(damagedWriter.layoutProblem ?? "")")
        let before = expectedCuts(Array(archive[..<Int(victim.headerStart)])).cuts
        #expect(before.isSubset(of: chunkStarts(damaged)))
        #expect(try restore(try ChunkedReader(repository: repo), damaged) == archive)

        // Short streams: nothing, less than a header, one header.
        for bytes in [[], randomBytes(100, seed: 401), TarStreamBoundariesTests.header("only", size: 0)] {
            let (r, w) = try writeArtifactKeepingWriter(session, "short", bytes, layout: .tar)
            try session.commit()
            #expect(r.size == Int64(bytes.count))
            #expect(try restore(try ChunkedReader(repository: repo), r) == bytes)
            #expect(w.layoutProblem == nil)
        }
    }
}
