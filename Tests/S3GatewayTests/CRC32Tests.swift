import CAutomateShims
import XCTest
@testable import S3Gateway

/// The CRC-32 of S3's `x-amz-checksum-crc32`: the carry-less multiplication path gives the same value as the
/// table one for every length, start and split, and the published check values.
final class CRC32Tests: XCTestCase {
    func testCheckValues() {
        XCTAssertEqual(crc(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(crc([]), 0)
        // What S3 clients send: the big-endian bytes in base64.
        var c = RunningChecksum(name: "crc32")!
        Array("123456789".utf8).withUnsafeBytes { c.update($0) }
        XCTAssertEqual(c.finalizeBase64(), "y/Q5Jg==")
        XCTAssertEqual(crc(Array(repeating: 0, count: 4096)), automate_crc32_sliced(0, Array(repeating: UInt8(0), count: 4096), 4096))
        // 1 MiB of 0xFF, as Python's zlib.crc32(b"\xff" * (1 << 20)) gives it.
        XCTAssertEqual(crc(Array(repeating: 0xFF, count: 1 << 20)), 0x956B_AC74)
    }

    /// Every length from 0 to 1100 at every start 0...15, and a 5 MB buffer updated in random pieces: the same
    /// as slicing-by-8.
    func testFoldingMatchesTheTableEverywhere() {
        #if arch(x86_64)
        XCTAssertEqual(automate_crc32_fold_available(), 1, "this x86-64 CPU has no PCLMULQDQ: only the table path was compared")
        #endif
        let data = randomBytes(5 << 20)
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            for start in 0..<16 {
                for n in 0...1100 {
                    let want = automate_crc32_sliced(0x1234_5678, base + start, n)
                    let got = automate_crc32(0x1234_5678, base + start, n)
                    if got != want { return XCTFail("length \(n) at \(start): \(got) != \(want)") }
                }
            }
            let whole = automate_crc32_sliced(0, base, data.count)
            XCTAssertEqual(automate_crc32(0, base, data.count), whole)
            var running: UInt32 = 0, at = 0
            while at < data.count {
                let n = min(Int.random(in: 1...300_000), data.count - at)
                running = automate_crc32(running, base + at, n)
                at += n
            }
            XCTAssertEqual(running, whole)
        }
    }

    private func crc(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { automate_crc32(0, $0.baseAddress, $0.count) }
    }
}
