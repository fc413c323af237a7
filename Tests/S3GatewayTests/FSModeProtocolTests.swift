import Foundation
import S3Client
import XCTest
@testable import S3Gateway

/// Raw, hand-signed requests: bad input, aws-chunked payloads, concurrency.
final class FSModeProtocolTests: XCTestCase {
    func assertError(_ r: RawResponse, _ status: Int, _ code: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.text, file: file, line: line)
        XCTAssertEqual(r.errorCode, code, r.text, file: file, line: line)
    }

    func testBadInputIsRejectedAndLeavesNothing() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let p = fx.port
        let body = Array("payload".utf8)

        // Wrong secret, unknown key id, tampered signature.
        let wrong = Credentials(accessKeyId: testCreds.accessKeyId, secretAccessKey: "not-the-secret")
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, creds: wrong), 403, "SignatureDoesNotMatch")
        let unknown = Credentials(accessKeyId: "AKIDUNKNOWN", secretAccessKey: testCreds.secretAccessKey)
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, creds: unknown), 403, "InvalidAccessKeyId")
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, tamper: true), 403, "SignatureDoesNotMatch")
        // No signature at all.
        assertError(try await rawRequest(port: p, method: "GET", path: "/repo/a", headers: []), 403, "AccessDenied")
        // Clock skewed by 20 minutes either way.
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, date: Date().addingTimeInterval(-1200)), 403, "RequestTimeTooSkewed")
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, date: Date().addingTimeInterval(1200)), 403, "RequestTimeTooSkewed")
        // Body not matching the signed sha256.
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, wireBody: Array("PAYLOAD".utf8)), 400, "XAmzContentSHA256Mismatch")
        // Body not matching Content-MD5; malformed Content-MD5.
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, payloadHash: "UNSIGNED-PAYLOAD",
                                            extraHeaders: [("Content-MD5", Digests.md5Base64(Array("other".utf8)))]), 400, "BadDigest")
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, payloadHash: "UNSIGNED-PAYLOAD",
                                            extraHeaders: [("Content-MD5", "nope")]), 400, "InvalidDigest")
        // Keys escaping the bucket, sent raw.
        for bad in ["/repo/../etc/passwd", "/repo/a/../../x", "/repo/a/%2e%2e/%2e%2e/x", "/repo/%2Fabs", "/repo/a%00b", "/repo/a//b",
                    "/repo/.automate-uploads/x", "/repo/" + String(repeating: "k", count: 1100)] {
            let r = try await signedRequest(port: p, method: "PUT", path: bad, body: body)
            XCTAssertEqual(r.status, 400, "\(bad): \(r.text)")
            XCTAssertTrue(["InvalidArgument", "KeyTooLongError"].contains(r.errorCode ?? ""), "\(bad): \(r.text)")
            let g = try await signedRequest(port: p, method: "GET", path: bad)
            XCTAssertEqual(g.status, 400, "\(bad): \(g.text)")
        }
        // Truncated aws-chunked body (no final chunk), with a valid signature chain so far.
        let truncated = "400\r\n" + String(repeating: "a", count: 1024) + "\r\n"
        let tr = try await signedRequest(port: p, method: "PUT", path: "/repo/chunked", payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                         extraHeaders: [("x-amz-decoded-content-length", "2048"), ("Content-Encoding", "aws-chunked"),
                                                        ("x-amz-trailer", "x-amz-checksum-crc32")], wireBody: Array(truncated.utf8))
        assertError(tr, 400, "IncompleteBody")
        // Connection dropped mid-body (Content-Length larger than what is sent).
        _ = try? await signedRequest(port: p, method: "PUT", path: "/repo/dropped", payloadHash: "UNSIGNED-PAYLOAD",
                                     wireBody: Array(repeating: 1, count: 100_000), contentLength: 1_000_000)
        // Wrong trailing checksum.
        let wrongTrailer = chunkedUnsigned(Array("hello".utf8), checksumName: "x-amz-checksum-crc32", checksum: "AAAAAA==")
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/badcrc", payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                            extraHeaders: [("x-amz-decoded-content-length", "5"), ("Content-Encoding", "aws-chunked"),
                                                           ("x-amz-trailer", "x-amz-checksum-crc32")], wireBody: wrongTrailer), 400, "BadDigest")
        // Signed chunks with a broken chain.
        let seedDate = Date()
        let badChain = signedChunks(Array("hello world".utf8), seed: String(repeating: "0", count: 64), date: seedDate, chunk: 4)
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/badchain", payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                            extraHeaders: [("x-amz-decoded-content-length", "11"), ("Content-Encoding", "aws-chunked")],
                                            date: seedDate, wireBody: badChain), 403, "SignatureDoesNotMatch")

        // Expired presigned URL.
        let signer = SigV4Signer(credentials: testCreds, region: "us-east-1")
        let host = "127.0.0.1:\(p)"
        let q = signer.presign(method: "GET", canonicalURI: "/repo/a", host: host, expires: 60, date: Date().addingTimeInterval(-120))
        let exp = try await rawRequest(port: p, method: "GET", path: "/repo/a?" + q, headers: [])
        assertError(exp, 403, "AccessDenied")
        XCTAssertTrue(exp.text.contains("Request has expired"), exp.text)
        // Valid presign for a missing key → NoSuchKey (auth passed).
        let ok = signer.presign(method: "GET", canonicalURI: "/repo/a", host: host, expires: 60)
        assertError(try await rawRequest(port: p, method: "GET", path: "/repo/a?" + ok, headers: []), 404, "NoSuchKey")
        // Tampered presign.
        assertError(try await rawRequest(port: p, method: "GET", path: "/repo/b?" + ok, headers: []), 403, "SignatureDoesNotMatch")

        // Nothing was stored by any of those.
        XCTAssertEqual(walk(fx.bucketDir), [])

        // Now real objects, then the errors that need them.
        let putA = try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body)
        XCTAssertEqual(putA.status, 200)
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/a", body: body, extraHeaders: [("If-None-Match", "*")]), 412, "PreconditionFailed")
        assertError(try await signedRequest(port: p, method: "GET", path: "/repo/a", extraHeaders: [("If-Match", "\"0123\"")]), 412, "PreconditionFailed")
        let nm = try await signedRequest(port: p, method: "GET", path: "/repo/a", extraHeaders: [("If-None-Match", "\"\(Digests.md5Hex(body))\"")])
        XCTAssertEqual(nm.status, 304)
        assertError(try await signedRequest(port: p, method: "GET", path: "/repo/a", extraHeaders: [("Range", "bytes=100-200")]), 416, "InvalidRange")
        let suffix = try await signedRequest(port: p, method: "GET", path: "/repo/a", extraHeaders: [("Range", "bytes=-3")])
        XCTAssertEqual(suffix.status, 206); XCTAssertEqual(suffix.text, "oad")
        assertError(try await signedRequest(port: p, method: "GET", path: "/repo/nope"), 404, "NoSuchKey")
        assertError(try await signedRequest(port: p, method: "GET", path: "/nobucket/x"), 404, "NoSuchBucket")
        assertError(try await signedRequest(port: p, method: "DELETE", path: "/repo"), 409, "BucketNotEmpty")
        assertError(try await signedRequest(port: p, method: "GET", path: "/repo/a", query: "acl="), 501, "NotImplemented")

        // Multipart complete naming a part that was never uploaded.
        let create = try await signedRequest(port: p, method: "POST", path: "/repo/mp", query: "uploads=")
        XCTAssertEqual(create.status, 200, create.text)
        let uploadId = try XCTUnwrap(XML.first("UploadId", in: Substring(create.text)))
        let part = Array(repeating: UInt8(7), count: 1000)
        let up = try await signedRequest(port: p, method: "PUT", path: "/repo/mp", query: "partNumber=1&uploadId=\(uploadId)", body: part)
        XCTAssertEqual(up.status, 200, up.text)
        let etag1 = up.headers["etag"] ?? ""
        let complete = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\(etag1)</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"00000000000000000000000000000000\"</ETag></Part></CompleteMultipartUpload>"
        assertError(try await signedRequest(port: p, method: "POST", path: "/repo/mp", query: "uploadId=\(uploadId)", body: Array(complete.utf8)), 400, "InvalidPart")
        // list parts, then abort cleans staging
        let lp = try await signedRequest(port: p, method: "GET", path: "/repo/mp", query: "uploadId=\(uploadId)")
        XCTAssertTrue(lp.text.contains("<PartNumber>1</PartNumber>") && lp.text.contains("<Size>1000</Size>"), lp.text)
        let abort = try await signedRequest(port: p, method: "DELETE", path: "/repo/mp", query: "uploadId=\(uploadId)")
        XCTAssertEqual(abort.status, 204)
        assertError(try await signedRequest(port: p, method: "PUT", path: "/repo/mp", query: "partNumber=1&uploadId=\(uploadId)", body: part), 404, "NoSuchUpload")

        XCTAssertEqual(walk(fx.bucketDir), ["a"])
        fx.assertNoLeftovers()
    }

    func testAwsChunkedPayloads() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let p = fx.port
        let data = randomBytes(200_000)
        // Unsigned payload with each trailing checksum algorithm.
        for (algo, sum) in [("crc32", crc32Base64(data)), ("crc32c", crc32cBase64(data)), ("sha256", Data(hexToBytes(Digests.sha256Hex(data))).base64EncodedString())] {
            let wire = chunkedUnsigned(data, checksumName: "x-amz-checksum-\(algo)", checksum: sum, chunk: 65536)
            let r = try await signedRequest(port: p, method: "PUT", path: "/repo/trailer-\(algo)", payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                            extraHeaders: [("x-amz-decoded-content-length", String(data.count)), ("Content-Encoding", "aws-chunked"),
                                                           ("x-amz-trailer", "x-amz-checksum-\(algo)")], wireBody: wire)
            XCTAssertEqual(r.status, 200, "\(algo): \(r.text)")
            XCTAssertEqual(r.headers["etag"], "\"\(Digests.md5Hex(data))\"")
            XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/trailer-\(algo)"), Data(data))
        }
        // Signed chunks: the signature chain seeded by the header signature.
        let date = Date()
        let signer = SigV4Signer(credentials: testCreds, region: "us-east-1")
        let headers: [String: String] = ["host": "127.0.0.1:\(p)", "x-amz-decoded-content-length": String(data.count), "content-encoding": "aws-chunked"]
        let signedHeaders = signer.sign(method: "PUT", canonicalURI: "/repo/signed-chunks", query: QueryItems(nil), headers: headers,
                                        payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", date: date)
        let auth = signedHeaders.first { $0.0 == "authorization" }!.1
        let seed = String(auth.split(separator: "=").last!)
        let wire = signedChunks(data, seed: seed, date: date, chunk: 65536)
        let r = try await rawRequest(port: p, method: "PUT", path: "/repo/signed-chunks",
                                     headers: [("x-amz-decoded-content-length", String(data.count)), ("Content-Encoding", "aws-chunked")] + signedHeaders, body: wire)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/signed-chunks"), Data(data))
        // The same body with one byte flipped fails its chunk signature.
        var flipped = wire
        flipped[flipped.count / 2] ^= 1
        let signed2 = signer.sign(method: "PUT", canonicalURI: "/repo/flipped", query: QueryItems(nil), headers: headers,
                                  payloadHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", date: date)
        let seed2 = String(signed2.first { $0.0 == "authorization" }!.1.split(separator: "=").last!)
        var wire2 = signedChunks(data, seed: seed2, date: date, chunk: 65536)
        wire2[wire2.count / 2] ^= 1
        let r2 = try await rawRequest(port: p, method: "PUT", path: "/repo/flipped",
                                      headers: [("x-amz-decoded-content-length", String(data.count)), ("Content-Encoding", "aws-chunked")] + signed2, body: wire2)
        XCTAssertEqual(r2.errorCode, "SignatureDoesNotMatch", r2.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: fx.bucketDir + "/flipped"))
        fx.assertNoLeftovers()
    }

    func testConcurrentUploads() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let p = fx.port
        // 100 different objects at once.
        let payloads = (0..<100).map { i in randomBytes(20_000 + i * 1000) }
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 0..<100 {
                g.addTask {
                    let r = try await signedRequest(port: p, method: "PUT", path: "/repo/many/obj-\(i)", body: payloads[i], payloadHash: "UNSIGNED-PAYLOAD")
                    XCTAssertEqual(r.status, 200, r.text)
                }
            }
            try await g.waitForAll()
        }
        for i in 0..<100 {
            XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/many/obj-\(i)"), Data(payloads[i]), "obj-\(i)")
        }
        let listed = try await signedRequest(port: p, method: "GET", path: "/repo", query: "list-type=2&prefix=many/")
        XCTAssertEqual(XML.first("KeyCount", in: Substring(listed.text)), "100")
        // 20 writers of the same key: the result is whole and equal to one of them.
        let writes = (0..<20).map { _ in randomBytes(300_000) }
        try await withThrowingTaskGroup(of: Void.self) { g in
            for i in 0..<20 {
                g.addTask {
                    let r = try await signedRequest(port: p, method: "PUT", path: "/repo/same", body: writes[i])
                    XCTAssertEqual(r.status, 200, r.text)
                }
            }
            try await g.waitForAll()
        }
        let got = try await signedRequest(port: p, method: "GET", path: "/repo/same")
        XCTAssertEqual(got.status, 200)
        XCTAssertTrue(writes.contains(got.body), "object is one of the writes, whole")
        XCTAssertEqual(got.headers["etag"], "\"\(Digests.md5Hex(got.body))\"")
        fx.assertNoLeftovers()
    }

    func testCredentialsFileMustBePrivate() throws {
        let dir = makeTempDir("creds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f = dir + "/c"
        _ = FileManager.default.createFile(atPath: f, contents: Data("AKID\nSECRET\n".utf8))
        chmod(f, 0o644)
        XCTAssertThrowsError(try loadCredentials(path: f)) { XCTAssertTrue("\($0)".contains("0600"), "\($0)") }
        chmod(f, 0o600)
        XCTAssertEqual(try loadCredentials(path: f), Credentials(accessKeyId: "AKID", secretAccessKey: "SECRET"))
        _ = FileManager.default.createFile(atPath: f, contents: Data("# gateway\naccess_key_id = \"A2\"\nsecret_access_key = \"S2\"\n".utf8))
        chmod(f, 0o400)
        XCTAssertEqual(try loadCredentials(path: f), Credentials(accessKeyId: "A2", secretAccessKey: "S2"))
    }
}

// MARK: aws-chunked builders

func hexToBytes(_ s: String) -> [UInt8] { Hex.decode(s)! }

func crc32Base64(_ d: [UInt8]) -> String {
    var c = RunningChecksum(name: "crc32")!
    d.withUnsafeBytes { c.update($0) }
    return c.finalizeBase64()
}

func crc32cBase64(_ d: [UInt8]) -> String {
    var c = RunningChecksum(name: "crc32c")!
    d.withUnsafeBytes { c.update($0) }
    return c.finalizeBase64()
}

func chunkedUnsigned(_ data: [UInt8], checksumName: String, checksum: String, chunk: Int = 65536) -> [UInt8] {
    var out = [UInt8]()
    var i = 0
    while i < data.count {
        let n = min(chunk, data.count - i)
        out += Array("\(String(n, radix: 16))\r\n".utf8) + data[i..<(i + n)] + [13, 10]
        i += n
    }
    out += Array("0\r\n\(checksumName):\(checksum)\r\n\r\n".utf8)
    return out
}

func signedChunks(_ data: [UInt8], seed: String, date: Date, chunk: Int) -> [UInt8] {
    let signer = SigV4Signer(credentials: testCreds, region: "us-east-1")
    let amz = SigV4Signer.amzDate(date)
    let key = signer.signingKey(date: amz)
    var prev = seed
    var out = [UInt8]()
    var i = 0
    var pieces: [ArraySlice<UInt8>] = []
    while i < data.count { let n = min(chunk, data.count - i); pieces.append(data[i..<(i + n)]); i += n }
    pieces.append([])
    for p in pieces {
        let sig = signer.chunkSignature(key: key, amzDate: amz, previous: prev, chunkSHA256Hex: Digests.sha256Hex(Array(p)))
        out += Array("\(String(p.count, radix: 16));chunk-signature=\(sig)\r\n".utf8) + p + [13, 10]
        prev = sig
    }
    return out
}
