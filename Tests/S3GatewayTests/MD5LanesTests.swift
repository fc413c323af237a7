import CAutomateShims
import NIOCore
import XCTest
@testable import S3Gateway

/// The uploads' MD5 as the lanes compute it (eight streams in lockstep with AVX2, one alone block by block):
/// the same digest as BoringSSL's for every length around a block, and for many streams fed at once in
/// pieces of every shape.
final class MD5LanesTests: XCTestCase {
    func testKnownDigestsAndEveryShortLength() async throws {
        let empty = try await digest([[]]), abc = try await digest([Array("abc".utf8)])
        XCTAssertEqual(empty, "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(abc, "900150983cd24fb0d6963f7d28e17f72")
        let data = randomBytes(300)
        for n in 0...data.count {
            // Split in two, so that held-over bytes and assembled blocks are exercised too.
            let cut = n / 3
            let got = try await digest([Array(data[..<cut]), Array(data[cut..<n])])
            XCTAssertEqual(got, Digests.md5Hex(Array(data[..<n])), "length \(n)")
        }
    }

    /// The x8 kernel itself: eight different streams, one block count, against one stream at a time.
    func testEightLanesMatchOneAtATime() {
        #if arch(x86_64)
        XCTAssertEqual(automate_md5_x8_available(), 1, "this x86-64 CPU has no AVX2: only the one-stream path was compared")
        #endif
        let blocks = 37
        let streams = (0..<8).map { _ in randomBytes(blocks * 64) }
        let initial: [UInt32] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476]
        var state = (0..<32).map { initial[$0 / 8] &+ UInt32($0 % 8) }  // a different start per lane
        var expected: [[UInt32]] = []
        for l in 0..<8 {
            var s = (0..<4).map { state[$0 * 8 + l] }
            streams[l].withUnsafeBufferPointer { p in s.withUnsafeMutableBufferPointer { automate_md5_blocks($0.baseAddress!, p.baseAddress!, blocks) } }
            expected.append(s)
        }
        let copies = streams.map { s -> UnsafeMutablePointer<UInt8> in
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: s.count)
            p.initialize(from: s, count: s.count)
            return p
        }
        defer { copies.forEach { $0.deallocate() } }
        let pointers: [UnsafePointer<UInt8>?] = copies.map { UnsafePointer($0) }
        pointers.withUnsafeBufferPointer { p in
            state.withUnsafeMutableBufferPointer { automate_md5_x8($0.baseAddress!, p.baseAddress!, blocks) }
        }
        for l in 0..<8 { XCTAssertEqual((0..<4).map { state[$0 * 8 + l] }, expected[l], "lane \(l)") }
    }

    /// Twenty streams at once, each fed 24 updates of 1 to 4 buffers of random sizes (empty, under a block,
    /// odd sizes up to 9 KB, and over a round's 64 KiB): every digest is BoringSSL's, so lanes never mix
    /// streams.
    func testManyStreamsAtOnceInRandomPieces() async throws {
        let roundsBefore = MD5Lanes.shared.roundsInLockstep
        let results = try await withThrowingTaskGroup(of: (String, String).self) { group in
            for _ in 0..<20 {
                group.addTask {
                    let stream = LaneMD5(inLanes: true)
                    var all: [UInt8] = []
                    for _ in 0..<24 {
                        var buffers: [ByteBuffer] = []
                        for _ in 0..<Int.random(in: 1...4) {
                            let size = [0, Int.random(in: 1..<64), Int.random(in: 64...9_000), Int.random(in: 100_000...140_000)].randomElement()!
                            let bytes = randomBytes(size)
                            all += bytes
                            buffers.append(ByteBuffer(bytes: bytes))
                        }
                        try await stream.update(buffers)
                    }
                    return (Hex.encode(stream.finalize()), Digests.md5Hex(all))
                }
            }
            var all: [(String, String)] = []
            for try await r in group { all.append(r) }
            return all
        }
        XCTAssertEqual(results.count, 20)
        for (got, want) in results { XCTAssertEqual(got, want) }
        #if arch(x86_64)
        XCTAssertGreaterThan(MD5Lanes.shared.roundsInLockstep, roundsBefore, "no round ran several streams at once")
        #endif
    }

    private func digest(_ updates: [[UInt8]]) async throws -> String {
        let stream = LaneMD5(inLanes: true)
        for u in updates { try await stream.update([ByteBuffer(bytes: u)]) }
        return Hex.encode(stream.finalize())
    }
}
