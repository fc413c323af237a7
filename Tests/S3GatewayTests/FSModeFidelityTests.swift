import Foundation
import S3Client
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// Conditional writes, multipart edge cases, UploadPartCopy, CreateBucket and URI parsing in filesystem mode.
final class FSModeFidelityTests: XCTestCase {
    static let conditionalScript = """
    B = 'repo'
    wrong = '"0123456789abcdef0123456789abcdef"'
    e1 = s3.put_object(Bucket=B, Key='cond/a', Body=b'one')['ETag']
    assert code(s3.put_object, Bucket=B, Key='cond/a', Body=b'two', IfMatch=wrong) == ('PreconditionFailed', 412)
    assert code(s3.put_object, Bucket=B, Key='cond/missing', Body=b'two', IfMatch=e1) == ('NoSuchKey', 404)
    e2 = s3.put_object(Bucket=B, Key='cond/a', Body=b'two', IfMatch=e1)['ETag']
    assert s3.get_object(Bucket=B, Key='cond/a')['Body'].read() == b'two'
    assert code(s3.put_object, Bucket=B, Key='cond/a', Body=b'three', IfNoneMatch='*') == ('PreconditionFailed', 412)
    s3.put_object(Bucket=B, Key='cond/new', Body=b'x', IfNoneMatch='*')
    def mpu(key, body):
        u = s3.create_multipart_upload(Bucket=B, Key=key)['UploadId']
        p = s3.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=1, Body=body)['ETag']
        return u, {'Parts': [{'PartNumber': 1, 'ETag': p}]}
    u, parts = mpu('cond/a', b'mp-body')
    assert code(s3.complete_multipart_upload, Bucket=B, Key='cond/a', UploadId=u, MultipartUpload=parts, IfMatch=e1) == ('PreconditionFailed', 412)
    assert code(s3.complete_multipart_upload, Bucket=B, Key='cond/a', UploadId=u, MultipartUpload=parts, IfNoneMatch='*') == ('PreconditionFailed', 412)
    s3.complete_multipart_upload(Bucket=B, Key='cond/a', UploadId=u, MultipartUpload=parts, IfMatch=e2)
    assert s3.get_object(Bucket=B, Key='cond/a')['Body'].read() == b'mp-body'
    u, parts = mpu('cond/none', b'z')
    assert code(s3.complete_multipart_upload, Bucket=B, Key='cond/none', UploadId=u, MultipartUpload=parts, IfMatch=e1) == ('NoSuchKey', 404)
    s3.complete_multipart_upload(Bucket=B, Key='cond/none', UploadId=u, MultipartUpload=parts, IfNoneMatch='*')
    # GET conditionals stay.
    e3 = s3.head_object(Bucket=B, Key='cond/a')['ETag']
    assert code(s3.get_object, Bucket=B, Key='cond/a', IfMatch=e1) == ('PreconditionFailed', 412)
    assert code(s3.get_object, Bucket=B, Key='cond/a', IfNoneMatch=e3) == ('304', 304)
    assert s3.get_object(Bucket=B, Key='cond/a', IfMatch=e3)['Body'].read() == b'mp-body'
    """

    static let multipartScript = """
    B = 'repo'
    key = 'mp/edge'
    a, b = b'a' * (5 << 20), b'b' * (5 << 20)
    u = s3.create_multipart_upload(Bucket=B, Key=key)['UploadId']
    p1 = s3.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=1, Body=a)['ETag']
    p1b = s3.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=1, Body=b)['ETag']   # uploaded twice: the last wins
    p2 = s3.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=2, Body=b'tail')['ETag']
    parts = s3.list_parts(Bucket=B, Key=key, UploadId=u)['Parts']
    assert [(p['PartNumber'], p['ETag']) for p in parts] == [(1, p1b), (2, p2)], parts
    assert code(s3.complete_multipart_upload, Bucket=B, Key=key, UploadId=u,
                MultipartUpload={'Parts': [{'PartNumber': 2, 'ETag': p2}, {'PartNumber': 1, 'ETag': p1b}]}) == ('InvalidPartOrder', 400)
    assert code(s3.complete_multipart_upload, Bucket=B, Key=key, UploadId=u,
                MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': p1}, {'PartNumber': 2, 'ETag': p2}]}) == ('InvalidPart', 400)
    s3.complete_multipart_upload(Bucket=B, Key=key, UploadId=u, MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': p1b}, {'PartNumber': 2, 'ETag': p2}]})
    assert s3.get_object(Bucket=B, Key=key)['Body'].read() == b + b'tail'
    assert code(s3.list_parts, Bucket=B, Key=key, UploadId=u) == ('NoSuchUpload', 404)

    # UploadPartCopy, with and without a range, from a key with special characters.
    src = 'copy src/a b+c?d&e=f%g#h \\u00fc'
    data = bytes(range(256)) * (24 * 1024)          # 6 MiB
    s3.put_object(Bucket=B, Key=src, Body=data)
    u = s3.create_multipart_upload(Bucket=B, Key='upc/dst')['UploadId']
    cs = {'Bucket': B, 'Key': src}
    r1 = s3.upload_part_copy(Bucket=B, Key='upc/dst', UploadId=u, PartNumber=1, CopySource=cs, CopySourceRange='bytes=0-5242879')
    assert r1['CopyPartResult']['ETag'] == '"%s"' % hashlib.md5(data[:5 << 20]).hexdigest(), r1
    r2 = s3.upload_part_copy(Bucket=B, Key='upc/dst', UploadId=u, PartNumber=2, CopySource=cs)
    assert r2['CopyPartResult']['ETag'] == '"%s"' % hashlib.md5(data).hexdigest(), r2
    for bad in ['bytes=hello-world', 'bytes=0', 'x', 'bytes', 'bytes=0-bar', 'bytes=hello-', 'bytes=0-2,3-5', 'bytes=5-3']:
        assert code(s3.upload_part_copy, Bucket=B, Key='upc/dst', UploadId=u, PartNumber=3, CopySource=cs, CopySourceRange=bad) == ('InvalidArgument', 400), bad
    assert code(s3.upload_part_copy, Bucket=B, Key='upc/dst', UploadId=u, PartNumber=3, CopySource=cs,
                CopySourceRange='bytes=0-%d' % len(data)) == ('InvalidRange', 416)
    assert code(s3.upload_part_copy, Bucket=B, Key='upc/dst', UploadId=u, PartNumber=3, CopySource={'Bucket': B, 'Key': 'nope'}) == ('NoSuchKey', 404)
    s3.complete_multipart_upload(Bucket=B, Key='upc/dst', UploadId=u, MultipartUpload={'Parts': [
        {'PartNumber': 1, 'ETag': r1['CopyPartResult']['ETag']}, {'PartNumber': 2, 'ETag': r2['CopyPartResult']['ETag']}]})
    assert s3.get_object(Bucket=B, Key='upc/dst')['Body'].read() == data[:5 << 20] + data

    # CreateBucket on a bucket we own, in us-east-1: 200, objects untouched.
    s3.create_bucket(Bucket=B)
    assert s3.get_object(Bucket=B, Key='upc/dst')['ContentLength'] == (5 << 20) + len(data)
    """

    func testConditionalWrites() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        try await runBoto3(Self.conditionalScript, endpoint: fx.endpoint)
        fx.assertNoLeftovers()
    }

    func testMultipartEdgeCasesAndUploadPartCopy() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        try await runBoto3(Self.multipartScript, endpoint: fx.endpoint)
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/copy src/a b+c?d&e=f%g#h \u{fc}")?.count, 6 << 20)
        fx.assertNoLeftovers()
    }

    /// A part resent while an earlier upload of the same part is still being received: each upload has its
    /// own temp file and the last one to complete is the part.
    func testPartResentWhileEarlierUploadInFlight() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let create = try await signedRequest(port: fx.port, method: "POST", path: "/repo/mp/inflight", query: "uploads=")
        XCTAssertEqual(create.status, 200, create.text)
        let uploadId = try XCTUnwrap(XML.first("UploadId", in: Substring(create.text)))
        let query = "partNumber=1&uploadId=\(uploadId)"
        let slowBody = randomBytes(1 << 20), fastBody = randomBytes(300_000)
        // The slow upload sends half its body and waits.
        let slow = try await StagedRequest(port: fx.port, method: "PUT", target: "/repo/mp/inflight?" + query,
                                           headers: signedHeaders(port: fx.port, method: "PUT", path: "/repo/mp/inflight", query: query),
                                           contentLength: slowBody.count, first: Array(slowBody[..<(512 << 10)]))
        // Meanwhile the same part is sent again, whole.
        let fast = try await signedRequest(port: fx.port, method: "PUT", path: "/repo/mp/inflight", query: query, body: fastBody)
        XCTAssertEqual(fast.status, 200, fast.text)
        let staging = fx.bucketDir + "/.automate-uploads/" + uploadId
        let record = try XCTUnwrap(PartRecord.load(dir: staging, number: 1))
        XCTAssertEqual(FileManager.default.contents(atPath: staging + "/" + record.file), Data(fastBody))
        // The slow one finishes last and wins.
        try await slow.send(Array(slowBody[(512 << 10)...]))
        let status = try await slow.status()
        XCTAssertEqual(status, 200)
        let slowETag = Digests.md5Hex(slowBody), fastETag = Digests.md5Hex(fastBody)
        let stale = try await signedRequest(port: fx.port, method: "POST", path: "/repo/mp/inflight", query: "uploadId=\(uploadId)",
                                            body: Array("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"\(fastETag)\"</ETag></Part></CompleteMultipartUpload>".utf8))
        XCTAssertEqual(stale.errorCode, "InvalidPart", stale.text)
        let done = try await signedRequest(port: fx.port, method: "POST", path: "/repo/mp/inflight", query: "uploadId=\(uploadId)",
                                           body: Array("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"\(slowETag)\"</ETag></Part></CompleteMultipartUpload>".utf8))
        XCTAssertEqual(done.status, 200, done.text)
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/mp/inflight"), Data(slowBody))
        fx.assertNoLeftovers()
    }

    func testCreateOwnedBucketOutsideUsEast1() async throws {
        let fx = try await FSFixture.start(region: "eu-west-1")
        defer { Task { await fx.stop() } }
        try await runBoto3("""
        s3.put_object(Bucket='repo', Key='kept', Body=b'kept')
        assert code(s3.create_bucket, Bucket='repo', CreateBucketConfiguration={'LocationConstraint': 'eu-west-1'}) == ('BucketAlreadyOwnedByYou', 409)
        assert s3.get_object(Bucket='repo', Key='kept')['Body'].read() == b'kept'
        s3.create_bucket(Bucket='fresh', CreateBucketConfiguration={'LocationConstraint': 'eu-west-1'})
        """, endpoint: fx.endpoint, region: "eu-west-1")
        XCTAssertTrue(FileManager.default.fileExists(atPath: fx.root + "/fresh"))
    }

    func testKeyNotValidUTF8() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        for path in ["/repo/bad%FF%FEkey", "/repo/%C3%28", "/repo/a%ZZ"] {
            let r = try await signedRequest(port: fx.port, method: "PUT", path: path, body: Array("x".utf8))
            XCTAssertEqual(r.status, 400, path)
            XCTAssertEqual(r.errorCode, "InvalidURI", r.text)
            XCTAssertEqual(XML.first("Message", in: Substring(r.text)), "Couldn't parse the specified URI.")
        }
        XCTAssertEqual(walk(fx.bucketDir), [])
    }
}
