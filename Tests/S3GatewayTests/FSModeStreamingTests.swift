import Foundation
import NIOCore
import S3Client
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// How bodies stream through the gateway: PUT bodies gathered into batches (big received buffers kept, small
/// pieces coalesced) and written in order; GET bodies read in reused chunks; socket reads sized by the number of
/// open connections.
final class FSModeStreamingTests: XCTestCase {
    /// Pieces of every size class, in an order that mixes kept buffers, coalesced pieces, pieces that overflow a
    /// coalescing buffer and pieces larger than a batch: the file holds them in order, the MD5 is theirs.
    func testPendingFileKeepsBytesInOrderAcrossBatches() async throws {
        let dir = makeTempDir("pending")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sizes = [1, 5_000, 70_000, 200_000, (64 << 10) - 1, 64 << 10, 100_000, 3, 60_000, 60_000, 60_000, 60_000, 60_000,
                     1_500_000, 10, 128 << 10, 40_000, 2_300_000, 7, 900_000]
        let data = randomBytes(sizes.reduce(0, +))
        let file = try await PendingFile.create(dir: dir)
        var at = 0
        for n in sizes {
            // A slice of a larger buffer, as the HTTP decoder hands them over.
            var bytes: [UInt8] = [0xEE]
            bytes += data[at..<(at + n)]
            bytes.append(0xEE)
            var wire = ByteBuffer(bytes: bytes)
            wire.moveReaderIndex(forwardBy: 1)
            try await file.write(wire.readSlice(length: n)!)
            at += n
        }
        let etag = Digests.md5Hex(data)
        try await file.commit(to: dir + "/object", etag: etag)
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/object"), Data(data))
        XCTAssertEqual(walk(dir), ["object"], "the temp file was renamed, nothing else left")
        // Every budget unit came back.
        var taken = 0
        while FilePool.writeBuffers.tryAcquire() { taken += 1 }
        for _ in 0..<taken { FilePool.writeBuffers.release() }
        XCTAssertEqual(taken, 32, "write budget units leaked")
    }

    /// `drain` hands back the MD5 of exactly what was written; an in-place write refuses bytes past its slot and
    /// leaves the bytes before and after the slot alone.
    func testInPlaceSlotIsBounded() async throws {
        let dir = makeTempDir("inplace")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/assembly"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: 0xAB, count: 3 << 20)))
        let part = randomBytes((1 << 20) + 4_321)
        let file = try await PendingFile.inPlace(path: path, offset: 1 << 20, limit: part.count, writes: JobChain())
        try await file.write(ByteBuffer(bytes: part[..<700_000]))
        try await file.write(ByteBuffer(bytes: part[700_000...]))
        do {
            try await file.write(ByteBuffer(bytes: [1]))
            XCTFail("a byte past the slot was accepted")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, S3Error.incompleteBody.code)
        }
        let md5 = try await file.drain()
        XCTAssertEqual(Hex.encode(md5), Digests.md5Hex(part))
        try await file.sync()
        let got = [UInt8](FileManager.default.contents(atPath: path)!)
        XCTAssertEqual(Array(got[(1 << 20)..<((1 << 20) + part.count)]), part)
        XCTAssertEqual(Set(got[..<(1 << 20)]), [0xAB])
        XCTAssertEqual(Set(got[((1 << 20) + part.count)...]), [0xAB])
    }

    /// Two parts writing into one assembly through one chain, their batches interleaved: each slot holds its
    /// part and each MD5 is its part's.
    func testInPlaceWritesShareTheAssemblysChain() async throws {
        let dir = makeTempDir("inplace-chain")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/assembly", slot = 3 << 20
        let parts = [randomBytes(slot), randomBytes(slot)]
        let chain = JobChain()
        var files: [PendingFile] = []
        for n in 0..<2 { files.append(try await PendingFile.inPlace(path: path, offset: n * slot, limit: slot, writes: chain)) }
        for piece in stride(from: 0, to: slot, by: 300_000) {
            for n in 0..<2 { try await files[n].write(ByteBuffer(bytes: parts[n][piece..<min(piece + 300_000, slot)])) }
        }
        for n in 0..<2 {
            let md5 = try await files[n].drain()
            XCTAssertEqual(Hex.encode(md5), Digests.md5Hex(parts[n]))
            try await files[n].sync()
        }
        XCTAssertTrue([UInt8](FileManager.default.contents(atPath: path)!) == parts[0] + parts[1], "the assembly differs")
    }

    /// A PUT over a large object: the new bytes are in place, a GET that began before reads the old ones to the
    /// end, and the old file's second name (removed after the rename) does not stay behind.
    func testReplacingALargeObject() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let old = randomBytes(Int(PendingFile.displaceFrom) + 1_000), new = randomBytes(Int(PendingFile.displaceFrom) + 2_000)
        let first = try await signedRequest(port: fx.port, method: "PUT", path: "/repo/big", body: old, payloadHash: "UNSIGNED-PAYLOAD")
        XCTAssertEqual(first.status, 200, first.text)
        let reader = open(fx.root + "/repo/big", O_RDONLY)
        XCTAssertGreaterThanOrEqual(reader, 0)
        defer { close(reader) }
        let second = try await signedRequest(port: fx.port, method: "PUT", path: "/repo/big", body: new, payloadHash: "UNSIGNED-PAYLOAD")
        XCTAssertEqual(second.status, 200, second.text)
        let got = try await signedRequest(port: fx.port, method: "GET", path: "/repo/big")
        XCTAssertTrue(got.body == new, "GET after the replacement is not the new object")
        var held = [UInt8](repeating: 0, count: old.count)
        XCTAssertEqual(pread(reader, &held, old.count, 0), old.count)
        XCTAssertTrue(held == old, "the old file changed under a reader")
        // The old file's second name goes on the file pool, after the response.
        let deadline = ContinuousClock.now + .seconds(10)
        while walk(fx.root).contains(where: { $0.contains(".automate-tmp") }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        fx.assertNoLeftovers()
    }

    /// Objects larger than several read chunks come back whole, and ranges that start, end or cross at chunk
    /// boundaries come back exact.
    func testLargeObjectsAndRangesAcrossReadChunks() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let p = fx.port
        let chunk = FSBackend.maximumReadChunk
        let data = randomBytes(5 * chunk + 12_345)
        let put = try await signedRequest(port: p, method: "PUT", path: "/repo/big", body: data, payloadHash: "UNSIGNED-PAYLOAD")
        XCTAssertEqual(put.status, 200, put.text)
        XCTAssertEqual(put.headers["etag"], "\"\(Digests.md5Hex(data))\"")
        let whole = try await signedRequest(port: p, method: "GET", path: "/repo/big")
        XCTAssertEqual(whole.status, 200)
        XCTAssertEqual(whole.body.count, data.count)
        XCTAssertTrue(whole.body == data, "whole object differs")
        let ranges: [(ClosedRange<Int>, String)] = [
            (0...(chunk - 1), "bytes=0-\(chunk - 1)"),
            (chunk...(chunk * 3), "bytes=\(chunk)-\(chunk * 3)"),
            ((chunk - 1)...(chunk * 2 + 1), "bytes=\(chunk - 1)-\(chunk * 2 + 1)"),
            ((data.count - 700_000)...(data.count - 1), "bytes=-700000"),
            ((chunk * 4 + 5)...(data.count - 1), "bytes=\(chunk * 4 + 5)-"),
        ]
        for (r, header) in ranges {
            let got = try await signedRequest(port: p, method: "GET", path: "/repo/big", extraHeaders: [("Range", header)])
            XCTAssertEqual(got.status, 206, header)
            XCTAssertEqual(got.headers["content-range"], "bytes \(r.lowerBound)-\(r.upperBound)/\(data.count)", header)
            XCTAssertTrue(got.body == Array(data[r]), "range \(header) differs")
        }
        fx.assertNoLeftovers()
    }

    /// A chunk read into a reused buffer never changes a copy of it that is still being sent; a file that is
    /// shorter than promised is an error, not a short answer.
    func testReusedReadBufferIsCopiedWhileHeld() throws {
        let dir = makeTempDir("readchunk")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = randomBytes(3_000)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/f", contents: Data(data)))
        let fd = open(dir + "/f", O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var buf = ByteBuffer()
        try readChunk(fd, at: 0, length: 1_000, into: &buf, path: "f")
        let held = buf
        try readChunk(fd, at: 1_000, length: 1_000, into: &buf, path: "f")
        XCTAssertEqual(Array(held.readableBytesView), Array(data[0..<1_000]))
        XCTAssertEqual(Array(buf.readableBytesView), Array(data[1_000..<2_000]))
        XCTAssertThrowsError(try readChunk(fd, at: 2_500, length: 1_000, into: &buf, path: "f"), "a short read must fail")
        // A chunk in pieces: the pieces follow each other, the number of buffers follows the length, and the
        // pieces still held from the read before keep their bytes.
        var pieces: [ByteBuffer] = []
        try readChunk(fd, at: 0, length: 2_500, into: &pieces, pieceSize: 1_000, path: "f")
        XCTAssertEqual(pieces.map(\.readableBytes), [1_000, 1_000, 500])
        let heldPieces = pieces
        try readChunk(fd, at: 100, length: 1_500, into: &pieces, pieceSize: 1_000, path: "f")
        XCTAssertEqual(pieces.flatMap { Array($0.readableBytesView) }, Array(data[100..<1_600]))
        XCTAssertEqual(heldPieces.flatMap { Array($0.readableBytesView) }, Array(data[0..<2_500]))
        XCTAssertEqual(try readChunk(fd, at: 2_500, length: 1_000, path: "f").readableBytes, 500, "short read allowed at the end")
        XCTAssertThrowsError(try readChunk(fd, at: 3_000, length: 10, path: "f"), "nothing to read must fail")
    }

    /// GET chunks shrink as GET bodies are sent at once, from 512 KiB for one down to 128 KiB from six on.
    func testReadChunkSharesTheBudget() {
        XCTAssertEqual(FSBackend.readChunkSize(reads: 0), 512 << 10)
        XCTAssertEqual(FSBackend.readChunkSize(reads: 1), 512 << 10)
        XCTAssertEqual(FSBackend.readChunkSize(reads: 2), 512 << 10)
        XCTAssertEqual(FSBackend.readChunkSize(reads: 3), 256 << 10)
        XCTAssertEqual(FSBackend.readChunkSize(reads: 6), 128 << 10)
        XCTAssertEqual(FSBackend.readChunkSize(reads: 100), 128 << 10)
        for n in 1...5 {
            XCTAssertLessThanOrEqual(n * (FSBackend.readAhead + 2) * FSBackend.readChunkSize(reads: n), FSBackend.readBudget, "\(n) GETs")
        }
    }

    /// Socket reads shrink as connections open, so that what they can hold stays within the budget, and stay
    /// within 8 KiB...128 KiB.
    func testReadSizeSharesTheBudget() {
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 0), 128 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 1), 128 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 2), 128 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 3), 64 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 10), 16 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 20), 8 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 100), 8 << 10)
        XCTAssertEqual(ReceiveBufferLimit.readSize(connections: 10_000), 8 << 10)
        var previous = Int.max
        for n in 1...40 {
            let size = ReceiveBufferLimit.readSize(connections: n)
            XCTAssertLessThanOrEqual(size, previous)
            XCTAssertEqual(size & (size - 1), 0, "\(size) is a power of two")
            if size > ReceiveBufferLimit.minimumRead {
                XCTAssertLessThanOrEqual(n * ReceiveBufferLimit.readsHeldPerConnection * size, ReceiveBufferLimit.budget, "\(n) connections")
            }
            previous = size
        }
    }
}
