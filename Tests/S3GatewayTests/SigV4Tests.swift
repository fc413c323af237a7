import Foundation
import XCTest
@testable import S3Gateway

/// The signer against AWS's published SigV4 examples, and listing order.
final class SigV4Tests: XCTestCase {
    let example = Credentials(accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")

    func testAWSExampleGetObject() {
        // "Example: GET Object" from the S3 SigV4 header-auth documentation.
        let s = SigV4Signer(credentials: example, region: "us-east-1")
        let creq = SigV4Signer.canonicalRequest(method: "GET", canonicalURI: "/test.txt", canonicalQuery: "",
            headers: ["host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9", "x-amz-content-sha256": SigV4Signer.emptySHA256,
                      "x-amz-date": "20130524T000000Z"],
            signedHeaders: ["host", "range", "x-amz-content-sha256", "x-amz-date"], payloadHash: SigV4Signer.emptySHA256)
        XCTAssertEqual(s.signature(amzDate: "20130524T000000Z", canonicalRequest: creq), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    func testAWSExampleChunkSignature() {
        // "Example: PUT Object" with STREAMING-AWS4-HMAC-SHA256-PAYLOAD: seed and first 64 KiB chunk of 'a'.
        let s = SigV4Signer(credentials: example, region: "us-east-1")
        let amz = "20130524T000000Z"
        let sig = s.chunkSignature(key: s.signingKey(date: amz), amzDate: amz,
                                   previous: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
                                   chunkSHA256Hex: Digests.sha256Hex(Array(repeating: UInt8(ascii: "a"), count: 65536)))
        XCTAssertEqual(sig, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
    }

    func testCanonicalQueryAndEncoding() {
        XCTAssertEqual(QueryItems("prefix=a%2Fb&list-type=2&delimiter=%2F&uploads").canonical(), "delimiter=%2F&list-type=2&prefix=a%2Fb&uploads=")
        XCTAssertEqual(URIEncoding.encode("a b+c~/d", keepSlash: true), "a%20b%2Bc~/d")
        XCTAssertTrue(constantTimeEquals("abc", "abc"))
        XCTAssertFalse(constantTimeEquals("abc", "abd"))
        XCTAssertFalse(constantTimeEquals("abc", "abcd"))
    }

    func testListingOrderMarkersAndPrefixes() throws {
        let dir = makeTempDir("list")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for k in ["a/b", "a-c", "a/c/d", "b", "a0"] {
            let p = dir + "/" + k
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: p, contents: Data("x".utf8))
        }
        let store = FSStore(root: nil, mappings: [:])
        XCTAssertEqual(store.list(bucket: dir, prefix: "", delimiter: nil, marker: nil, maxKeys: 1000).objects.map(\.key), ["a-c", "a/b", "a/c/d", "a0", "b"])
        let d = store.list(bucket: dir, prefix: "", delimiter: "/", marker: nil, maxKeys: 1000)
        XCTAssertEqual(d.objects.map(\.key), ["a-c", "a0", "b"])
        XCTAssertEqual(d.commonPrefixes, ["a/"])
        let page = store.list(bucket: dir, prefix: "", delimiter: "/", marker: nil, maxKeys: 2)
        XCTAssertEqual(page.objects.map(\.key) + page.commonPrefixes, ["a-c", "a/"])
        XCTAssertTrue(page.truncated)
        let next = store.list(bucket: dir, prefix: "", delimiter: "/", marker: page.nextMarker, maxKeys: 2)
        XCTAssertEqual(next.objects.map(\.key), ["a0", "b"])
        XCTAssertFalse(next.truncated)
        XCTAssertEqual(store.list(bucket: dir, prefix: "a/", delimiter: "/", marker: nil, maxKeys: 10).commonPrefixes, ["a/c/"])
        XCTAssertEqual(store.list(bucket: dir, prefix: "a/c", delimiter: nil, marker: "a/b", maxKeys: 10).objects.map(\.key), ["a/c/d"])
    }
}
