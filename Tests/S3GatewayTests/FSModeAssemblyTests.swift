import Foundation
import Logging
import S3Client
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// Multipart uploads whose parts are written once, into the upload's assembly file, and the copying
/// fallbacks: the object's bytes and ETag are checked against what was sent, the inodes show whether the
/// assembly itself became the object.
final class FSModeAssemblyTests: XCTestCase {
    static let stride = 5 << 20

    /// One multipart upload driven with raw signed requests.
    struct Upload {
        let port: Int
        let key: String
        let id: String
        let dir: String

        var path: String { "/repo/" + key }
        var assembly: String { dir + "/assembly" }

        static func create(_ fx: FSFixture, key: String) async throws -> Upload {
            let r = try await signedRequest(port: fx.port, method: "POST", path: "/repo/" + key, query: "uploads=")
            XCTAssertEqual(r.status, 200, r.text)
            let id = try XCTUnwrap(XML.first("UploadId", in: Substring(r.text)))
            return Upload(port: fx.port, key: key, id: id, dir: fx.bucketDir + "/.automate-uploads/" + id)
        }

        func onPort(_ port: Int) -> Upload { Upload(port: port, key: key, id: id, dir: dir) }

        /// Uploads part `n`; returns its ETag (checked to be the body's MD5).
        @discardableResult
        func put(_ n: Int, _ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) async throws -> String {
            let r = try await signedRequest(port: port, method: "PUT", path: path, query: "partNumber=\(n)&uploadId=\(id)", body: body,
                                            payloadHash: "UNSIGNED-PAYLOAD")
            XCTAssertEqual(r.status, 200, r.text, file: file, line: line)
            XCTAssertEqual(r.headers["etag"], "\"\(Digests.md5Hex(body))\"", file: file, line: line)
            return Digests.md5Hex(body)
        }

        /// Uploads parts concurrently, two at a time, in the order given.
        func putPairs(_ parts: [(Int, [UInt8])]) async throws {
            var i = 0
            while i < parts.count {
                let pair = Array(parts[i..<min(i + 2, parts.count)])
                try await withThrowingTaskGroup(of: Void.self) { g in
                    for (n, body) in pair { g.addTask { try await self.put(n, body) } }
                    try await g.waitForAll()
                }
                i += 2
            }
        }

        func complete(_ parts: [(Int, [UInt8])]) async throws -> RawResponse {
            var xml = "<CompleteMultipartUpload>"
            for (n, body) in parts { xml += "<Part><PartNumber>\(n)</PartNumber><ETag>\"\(Digests.md5Hex(body))\"</ETag></Part>" }
            xml += "</CompleteMultipartUpload>"
            return try await signedRequest(port: port, method: "POST", path: path, query: "uploadId=\(id)", body: Array(xml.utf8))
        }

        /// Completes with `parts` and checks the reply's ETag and the stored object against them.
        func completeAndCheck(_ parts: [(Int, [UInt8])], fx: FSFixture, file: StaticString = #filePath, line: UInt = #line) async throws {
            let r = try await complete(parts)
            XCTAssertEqual(r.status, 200, r.text, file: file, line: line)
            let want = FSModeAssemblyTests.multipartETag(parts.map(\.1))
            XCTAssertEqual(XML.first("ETag", in: Substring(r.text)), "\"\(want)\"", file: file, line: line)
            let expected = parts.flatMap(\.1)
            let stored = try XCTUnwrap(FileManager.default.contents(atPath: fx.bucketDir + "/" + key), file: file, line: line)
            XCTAssertEqual(stored.count, expected.count, file: file, line: line)
            XCTAssertEqual(Digests.sha256Hex(Array(stored)), Digests.sha256Hex(expected), "object bytes", file: file, line: line)
            let head = try await signedRequest(port: port, method: "HEAD", path: path)
            XCTAssertEqual(head.headers["etag"], "\"\(want)\"", file: file, line: line)
            XCTAssertNil(statPath(dir), "upload folder removed", file: file, line: line)
        }

        /// The names of staged part data files in the upload's folder.
        var stagedFiles: [String] { (listDir(dir) ?? []).filter { $0.hasPrefix("data-") }.sorted() }
    }

    static func multipartETag(_ parts: [[UInt8]]) -> String {
        Digests.md5Hex(parts.flatMap { hexToBytes(Digests.md5Hex($0)) }) + "-\(parts.count)"
    }

    func inode(_ path: String) throws -> UInt64 { try XCTUnwrap(statPath(path), "stat \(path)").ino }

    func testCommonShapeIsWrittenOnceAndTheAssemblyBecomesTheObject() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let parts = (1...5).map { n in (n, randomBytes(n == 5 ? 1_500_000 : Self.stride)) }
        let up = try await Upload.create(fx, key: "db/dump.zst")
        // Two at a time, out of order, the short last part among them.
        try await up.putPairs([parts[1], parts[0], parts[4], parts[3], parts[2]])
        XCTAssertEqual(up.stagedFiles.count, 1, "only the short last part is staged")
        let listed = try await signedRequest(port: fx.port, method: "GET", path: up.path, query: "uploadId=\(up.id)")
        XCTAssertEqual(XML.elements("Size", in: Substring(listed.text)).map(String.init), parts.map { String($0.1.count) })
        XCTAssertEqual(XML.elements("ETag", in: Substring(listed.text)).map(String.init), parts.map { "&quot;\(Digests.md5Hex($0.1))&quot;" })
        let assembly = try inode(up.assembly)
        try await up.completeAndCheck(parts, fx: fx)
        XCTAssertEqual(try inode(fx.bucketDir + "/db/dump.zst"), assembly, "the assembly was renamed into place, not copied")

        // All parts of the stride (nothing to copy at all), a single part, and a part list of one small part.
        let even = (1...2).map { n in (n, randomBytes(Self.stride)) }
        let up2 = try await Upload.create(fx, key: "even")
        try await up2.putPairs([even[1], even[0]])
        XCTAssertEqual(up2.stagedFiles, [])
        let evenInode = try inode(up2.assembly)
        try await up2.completeAndCheck(even, fx: fx)
        XCTAssertEqual(try inode(fx.bucketDir + "/even"), evenInode)
        let one = [(1, randomBytes(1000))]
        let up3 = try await Upload.create(fx, key: "one")
        try await up3.put(1, one[0].1)
        try await up3.completeAndCheck(one, fx: fx)
        fx.assertNoLeftovers()
    }

    func testMixedPartSizesAreCopied() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        // The first part fixes the stride at 6 MiB; part 2 (5 MiB) is staged, so the parts are copied.
        let parts = [(1, randomBytes(6 << 20)), (2, randomBytes(5 << 20)), (3, randomBytes(6 << 20)), (4, randomBytes(70_000))]
        let up = try await Upload.create(fx, key: "mixed")
        try await up.put(1, parts[0].1)
        try await up.putPairs([parts[2], parts[1], parts[3]])
        XCTAssertEqual(up.stagedFiles.count, 2)
        let assembly = try inode(up.assembly)
        try await up.completeAndCheck(parts, fx: fx)
        XCTAssertNotEqual(try inode(fx.bucketDir + "/mixed"), assembly)
        // A part below the size limit in the middle is still EntityTooSmall.
        let small = [(1, randomBytes(Self.stride)), (2, randomBytes(100)), (3, randomBytes(Self.stride))]
        let up2 = try await Upload.create(fx, key: "small")
        try await up2.putPairs(small)
        let r = try await up2.complete(small)
        XCTAssertEqual(r.errorCode, "EntityTooSmall", r.text)
        let abort = try await signedRequest(port: fx.port, method: "DELETE", path: up2.path, query: "uploadId=\(up2.id)")
        XCTAssertEqual(abort.status, 204, abort.text)
        XCTAssertNil(statPath(up2.dir), "abort removes the assembly with the upload's folder")
        let late = try await signedRequest(port: fx.port, method: "PUT", path: up2.path, query: "partNumber=4&uploadId=\(up2.id)",
                                           body: randomBytes(100), payloadHash: "UNSIGNED-PAYLOAD")
        XCTAssertEqual(late.errorCode, "NoSuchUpload", late.text)
        fx.assertNoLeftovers()
    }

    func testReuploadedPartWinsAndLeavesTheCommittedSlotAlone() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        var parts = (1...3).map { n in (n, randomBytes(Self.stride)) }
        let up = try await Upload.create(fx, key: "again")
        try await up.putPairs(parts)
        let first = parts[1].1
        parts[1].1 = randomBytes(Self.stride)
        try await up.put(2, parts[1].1)
        XCTAssertEqual(up.stagedFiles.count, 1, "a committed part's slot is never written again")
        let slot = try XCTUnwrap(FileHandle(forReadingAtPath: up.assembly))
        try slot.seek(toOffset: UInt64(Self.stride))
        XCTAssertEqual(Array(try XCTUnwrap(slot.read(upToCount: Self.stride))), first)
        try slot.close()
        var stale = parts
        stale[1].1 = first
        let r = try await up.complete(stale)
        XCTAssertEqual(r.errorCode, "InvalidPart", r.text)
        // A third upload of part 2 replaces the second's staged file.
        parts[1].1 = randomBytes(Self.stride)
        try await up.put(2, parts[1].1)
        XCTAssertEqual(up.stagedFiles.count, 1)
        try await up.completeAndCheck(parts, fx: fx)
        fx.assertNoLeftovers()
    }

    func testSubsetsOfPartsAreCopied() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let parts = (1...3).map { n in (n, randomBytes(Self.stride)) }
        let up = try await Upload.create(fx, key: "gap")
        try await up.putPairs(parts)
        try await up.completeAndCheck([parts[0], parts[2]], fx: fx)
        // 1 and 2 of 1...3: part 3 also lies in the assembly, which therefore is not cut short and moved.
        let up2 = try await Upload.create(fx, key: "prefix")
        try await up2.putPairs(parts)
        let assembly = try inode(up2.assembly)
        try await up2.completeAndCheck([parts[0], parts[1]], fx: fx)
        XCTAssertNotEqual(try inode(fx.bucketDir + "/prefix"), assembly)
        // Parts out of order in the request.
        let up3 = try await Upload.create(fx, key: "order")
        try await up3.putPairs(parts)
        let r = try await up3.complete([parts[1], parts[0]])
        XCTAssertEqual(r.errorCode, "InvalidPartOrder", r.text)
        try await up3.completeAndCheck(parts, fx: fx)
        fx.assertNoLeftovers()
    }

    func testUploadPartCopyParts() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let source = randomBytes(7 << 20)
        let put = try await signedRequest(port: fx.port, method: "PUT", path: "/repo/source", body: source, payloadHash: "UNSIGNED-PAYLOAD")
        XCTAssertEqual(put.status, 200, put.text)
        func copyPart(_ up: Upload, _ n: Int, range: Range<Int>) async throws -> (Int, [UInt8]) {
            let r = try await signedRequest(port: fx.port, method: "PUT", path: up.path, query: "partNumber=\(n)&uploadId=\(up.id)",
                                            extraHeaders: [("x-amz-copy-source", "/repo/source"),
                                                           ("x-amz-copy-source-range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")])
            XCTAssertEqual(r.status, 200, r.text)
            let bytes = Array(source[range])
            XCTAssertEqual(XML.first("ETag", in: Substring(r.text)), "\"\(Digests.md5Hex(bytes))\"")
            return (n, bytes)
        }
        // A copied part in the middle: copied at completion.
        let up = try await Upload.create(fx, key: "copied")
        let p1 = (1, randomBytes(Self.stride))
        try await up.put(1, p1.1)
        let p2 = try await copyPart(up, 2, range: 1000..<(1000 + Self.stride))
        let p3 = try await copyPart(up, 3, range: 0..<12345)
        try await up.completeAndCheck([p1, p2, p3], fx: fx)
        // A copied last part: moved into the assembly's last slot, the assembly becomes the object.
        let up2 = try await Upload.create(fx, key: "copied-last")
        let q = (1...2).map { n in (n, randomBytes(Self.stride)) }
        try await up2.putPairs(q)
        let q3 = try await copyPart(up2, 3, range: (1 << 20)..<(7 << 20))
        let assembly = try inode(up2.assembly)
        try await up2.completeAndCheck(q + [q3], fx: fx)
        XCTAssertEqual(try inode(fx.bucketDir + "/copied-last"), assembly)
        fx.assertNoLeftovers()
    }

    func testFailedPartUploadsLeaveNoPartAndAreRetried() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let parts = (1...4).map { n in (n, randomBytes(n == 4 ? 3000 : Self.stride)) }
        let up = try await Upload.create(fx, key: "retried")
        try await up.putPairs([parts[0], parts[2]])
        let query = "partNumber=2&uploadId=\(up.id)"
        // Part 2 declaring the stride but sending more (aws-chunked): refused before it reaches part 3's slot.
        let long = parts[1].1 + randomBytes(10)
        let overlong = try await signedRequest(port: fx.port, method: "PUT", path: up.path, query: query,
                                               payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                               extraHeaders: [("x-amz-decoded-content-length", String(Self.stride)), ("Content-Encoding", "aws-chunked"),
                                                              ("x-amz-trailer", "x-amz-checksum-crc32")],
                                               wireBody: chunkedUnsigned(long, checksumName: "x-amz-checksum-crc32", checksum: crc32Base64(long)))
        XCTAssertEqual(overlong.errorCode, "IncompleteBody", overlong.text)
        let slot = try XCTUnwrap(FileHandle(forReadingAtPath: up.assembly))
        try slot.seek(toOffset: UInt64(2 * Self.stride))
        XCTAssertEqual(Array(try XCTUnwrap(slot.read(upToCount: Self.stride))), parts[2].1, "part 3 untouched")
        try slot.close()
        // Part 2 again: the client goes away half way through its body.
        let half = try await StagedRequest(port: fx.port, method: "PUT", target: up.path + "?" + query,
                                           headers: signedHeaders(port: fx.port, method: "PUT", path: up.path, query: query),
                                           contentLength: Self.stride, first: Array(parts[1].1[..<(Self.stride / 2)]))
        shutdown(half.fd, Int32(SHUT_RDWR))
        let status = try await half.status()
        XCTAssertEqual(status, 0)
        // And once with a wrong Content-MD5.
        let bad = try await signedRequest(port: fx.port, method: "PUT", path: up.path, query: query, body: parts[1].1, payloadHash: "UNSIGNED-PAYLOAD",
                                          extraHeaders: [("Content-MD5", Digests.md5Base64(parts[0].1))])
        XCTAssertEqual(bad.errorCode, "BadDigest", bad.text)
        let listed = try await signedRequest(port: fx.port, method: "GET", path: up.path, query: "uploadId=\(up.id)")
        XCTAssertEqual(XML.elements("PartNumber", in: Substring(listed.text)).map(String.init), ["1", "3"])
        let missing = try await up.complete(Array(parts[0...2]))
        XCTAssertEqual(missing.errorCode, "InvalidPart", missing.text)
        // The retry, sent aws-chunked the way the CLI does, completes the upload.
        let retry = try await signedRequest(port: fx.port, method: "PUT", path: up.path, query: query,
                                            payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                            extraHeaders: [("x-amz-decoded-content-length", String(Self.stride)), ("Content-Encoding", "aws-chunked"),
                                                           ("x-amz-trailer", "x-amz-checksum-crc32")],
                                            wireBody: chunkedUnsigned(parts[1].1, checksumName: "x-amz-checksum-crc32", checksum: crc32Base64(parts[1].1)))
        XCTAssertEqual(retry.status, 200, retry.text)
        try await up.put(4, parts[3].1)
        try await up.completeAndCheck(parts, fx: fx)
        fx.assertNoLeftovers()
    }

    func testUploadSurvivesARestartBetweenPartsAndCompletion() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let parts = (1...4).map { n in (n, randomBytes(n == 4 ? 777_777 : Self.stride)) }
        var up = try await Upload.create(fx, key: "restart/obj")
        try await up.putPairs([parts[1], parts[0]])
        await fx.gateway.stop()
        var logger = Logger(label: "gw-test")
        logger.logLevel = .critical
        let config = GatewayConfig(port: 0, mode: .filesystem(root: fx.root, buckets: [:]), credentials: testCreds, region: "us-east-1")
        let second = try await RunningGateway.start(config, logger: logger)
        defer { Task { await second.stop() } }
        up = up.onPort(second.port)
        let listed = try await signedRequest(port: second.port, method: "GET", path: up.path, query: "uploadId=\(up.id)")
        XCTAssertEqual(XML.elements("Size", in: Substring(listed.text)).map(String.init), [String(Self.stride), String(Self.stride)])
        // The stride fixed before the restart still places part 3 in the assembly.
        try await up.putPairs([parts[3], parts[2]])
        XCTAssertEqual(up.stagedFiles.count, 1)
        let assembly = try inode(up.assembly)
        let r = try await up.complete(parts)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(XML.first("ETag", in: Substring(r.text)), "\"\(Self.multipartETag(parts.map(\.1)))\"")
        XCTAssertEqual(Digests.sha256Hex(Array(try XCTUnwrap(FileManager.default.contents(atPath: fx.bucketDir + "/restart/obj")))),
                       Digests.sha256Hex(parts.flatMap(\.1)))
        XCTAssertEqual(try inode(fx.bucketDir + "/restart/obj"), assembly)
        fx.assertNoLeftovers()
    }

    /// An upload left by an earlier gateway (parts staged as `part-NNNNN` data files) lists and completes; a
    /// part sent again now replaces its old file.
    func testUploadStagedByAnEarlierGatewayCompletes() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        var parts = (1...3).map { n in (n, randomBytes(n == 3 ? 5000 : Self.stride)) }
        let up = try await Upload.create(fx, key: "legacy")
        for (n, body) in parts.prefix(2) {
            XCTAssertTrue(FileManager.default.createFile(atPath: up.dir + "/" + FSStore.partName(n), contents: Data(body)))
        }
        parts[1].1 = randomBytes(Self.stride)
        try await up.put(2, parts[1].1)
        try await up.put(3, parts[2].1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: up.dir + "/" + FSStore.partName(2)), "replaced by the new upload of part 2")
        let listed = try await signedRequest(port: fx.port, method: "GET", path: up.path, query: "uploadId=\(up.id)")
        XCTAssertEqual(XML.elements("ETag", in: Substring(listed.text)).map(String.init), parts.map { "&quot;\(Digests.md5Hex($0.1))&quot;" })
        try await up.completeAndCheck(parts, fx: fx)
        fx.assertNoLeftovers()
    }
}
