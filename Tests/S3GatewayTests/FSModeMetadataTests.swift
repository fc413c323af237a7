import Foundation
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// Object metadata in filesystem mode (both storages), with boto3, awscli and curl.
final class FSModeMetadataTests: XCTestCase {
    /// Metadata round trip, hand-written files, CopyObject directives, multipart metadata and `partNumber` reads.
    static let metadataScript = """
    import email.utils, os
    B = 'repo'
    bucket_dir = sys.argv[3]
    exp = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    r = s3.put_object(Bucket=B, Key='meta/a.txt', Body=b'hello', ContentType='text/plain; charset=utf-8', ContentEncoding='identity',
                      CacheControl='max-age=60', Expires=exp, ContentDisposition='attachment; filename="a.txt"', ContentLanguage='en',
                      Metadata={'Owner': 'ops team', 'n': '1'})
    etag = r['ETag']
    def check(h, ct, meta, **kw):
        assert h['ContentType'] == ct, (ct, h['ContentType'])
        assert h['Metadata'] == meta, (meta, h['Metadata'])
        for k, v in kw.items():
            assert h.get(k) == v, (k, v, h.get(k))
    std = dict(ContentEncoding='identity', CacheControl='max-age=60', ContentDisposition='attachment; filename="a.txt"', ContentLanguage='en')
    for h in (s3.head_object(Bucket=B, Key='meta/a.txt'), s3.get_object(Bucket=B, Key='meta/a.txt')):
        check(h, 'text/plain; charset=utf-8', {'owner': 'ops team', 'n': '1'}, **std)
        assert h['ResponseMetadata']['HTTPHeaders']['expires'] == email.utils.format_datetime(exp, usegmt=True), h['ResponseMetadata']['HTTPHeaders']
    assert s3.get_object(Bucket=B, Key='meta/a.txt')['Body'].read() == b'hello'
    # response-* overrides win over stored headers
    g = s3.get_object(Bucket=B, Key='meta/a.txt', ResponseContentType='text/html')
    assert g['ContentType'] == 'text/html', g['ContentType']
    # A file written by hand: no metadata, application/octet-stream.
    os.makedirs(bucket_dir + '/hand', exist_ok=True)
    open(bucket_dir + '/hand/x.bin', 'wb').write(b'by hand')
    check(s3.head_object(Bucket=B, Key='hand/x.bin'), 'application/octet-stream', {})
    # An object overwritten without metadata loses the old metadata.
    s3.put_object(Bucket=B, Key='meta/plain', Body=b'p', ContentType='text/x-old', Metadata={'old': '1'})
    s3.put_object(Bucket=B, Key='meta/plain', Body=b'q')
    h = s3.head_object(Bucket=B, Key='meta/plain')
    assert h['Metadata'] == {} and h['ContentType'] in ('application/octet-stream', 'binary/octet-stream'), h
    # A file rewritten by hand in place (same inode) no longer claims the old metadata.
    s3.put_object(Bucket=B, Key='meta/rewritten', Body=b'1234', ContentType='text/x-gw', Metadata={'gw': '1'})
    with open(bucket_dir + '/meta/rewritten', 'r+b') as f:
        f.write(b'5678')
    os.utime(bucket_dir + '/meta/rewritten', (1, 1))
    check(s3.head_object(Bucket=B, Key='meta/rewritten'), 'application/octet-stream', {})

    # CopyObject: COPY (default) keeps the source's metadata, REPLACE takes the request's.
    s3.copy_object(Bucket=B, Key='meta/copy', CopySource={'Bucket': B, 'Key': 'meta/a.txt'})
    check(s3.head_object(Bucket=B, Key='meta/copy'), 'text/plain; charset=utf-8', {'owner': 'ops team', 'n': '1'}, **std)
    s3.copy_object(Bucket=B, Key='meta/repl', CopySource={'Bucket': B, 'Key': 'meta/a.txt'}, MetadataDirective='REPLACE',
                   ContentType='application/json', Metadata={'x': 'y'})
    h = s3.head_object(Bucket=B, Key='meta/repl')
    check(h, 'application/json', {'x': 'y'})
    assert 'CacheControl' not in h and 'ContentDisposition' not in h, h
    # Onto itself: refused without REPLACE, new metadata with it (same bytes, same ETag).
    assert code(s3.copy_object, Bucket=B, Key='meta/a.txt', CopySource={'Bucket': B, 'Key': 'meta/a.txt'}) == ('InvalidRequest', 400)
    s3.copy_object(Bucket=B, Key='meta/a.txt', CopySource={'Bucket': B, 'Key': 'meta/a.txt'}, MetadataDirective='REPLACE',
                   ContentType='text/markdown', Metadata={'v': '2'})
    h = s3.head_object(Bucket=B, Key='meta/a.txt')
    check(h, 'text/markdown', {'v': '2'})
    assert h['ETag'] == etag, (h['ETag'], etag)
    assert s3.get_object(Bucket=B, Key='meta/a.txt')['Body'].read() == b'hello'
    assert code(s3.put_object, Bucket=B, Key='meta/big', Body=b'x', Metadata={'m': 'v' * 2100}) == ('MetadataTooLarge', 400)

    # Multipart: metadata given at CreateMultipartUpload, part boundaries for partNumber reads.
    a, b = b'a' * (5 << 20), b'b' * 100
    u = s3.create_multipart_upload(Bucket=B, Key='meta/mp', ContentType='application/x-tar', Metadata={'k': 'v'})['UploadId']
    p1 = s3.upload_part(Bucket=B, Key='meta/mp', UploadId=u, PartNumber=1, Body=a)['ETag']
    p2 = s3.upload_part(Bucket=B, Key='meta/mp', UploadId=u, PartNumber=2, Body=b)['ETag']
    s3.complete_multipart_upload(Bucket=B, Key='meta/mp', UploadId=u, MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': p1}, {'PartNumber': 2, 'ETag': p2}]})
    check(s3.head_object(Bucket=B, Key='meta/mp'), 'application/x-tar', {'k': 'v'})
    g = s3.get_object(Bucket=B, Key='meta/mp', PartNumber=1)
    assert g['ResponseMetadata']['HTTPStatusCode'] == 206 and g['PartsCount'] == 2 and g['ContentLength'] == len(a), g
    assert g['ContentRange'] == 'bytes 0-%d/%d' % (len(a) - 1, len(a) + len(b)), g['ContentRange']
    assert g['Body'].read() == a
    g = s3.get_object(Bucket=B, Key='meta/mp', PartNumber=2)
    assert g['Body'].read() == b and g['ContentRange'] == 'bytes %d-%d/%d' % (len(a), len(a) + len(b) - 1, len(a) + len(b)), g['ContentRange']
    h = s3.head_object(Bucket=B, Key='meta/mp', PartNumber=2)
    assert h['ContentLength'] == len(b) and h['PartsCount'] == 2, h
    assert code(s3.get_object, Bucket=B, Key='meta/mp', PartNumber=3) == ('InvalidPartNumber', 416)
    assert code(s3.head_object, Bucket=B, Key='meta/mp', PartNumber=3) == ('416', 416)
    # Not uploaded in parts: part 1 is the whole object, others do not exist.
    g = s3.get_object(Bucket=B, Key='hand/x.bin', PartNumber=1)
    assert g['Body'].read() == b'by hand' and g['ContentRange'] == 'bytes 0-6/7' and 'PartsCount' not in g, g
    assert code(s3.get_object, Bucket=B, Key='hand/x.bin', PartNumber=2) == ('InvalidPartNumber', 416)
    assert code(s3.get_object, Bucket=B, Key='hand/x.bin', PartNumber=0) == ('InvalidArgument', 400)
    # A copy of a multipart object keeps its ETag and so its parts.
    s3.copy_object(Bucket=B, Key='meta/mp-copy', CopySource={'Bucket': B, 'Key': 'meta/mp'})
    assert s3.get_object(Bucket=B, Key='meta/mp-copy', PartNumber=2)['Body'].read() == b
    """

    func runMetadataRoundTrip(_ storage: MetadataStorage) async throws {
        let fx = try await FSFixture.start(metadataStorage: storage)
        defer { Task { await fx.stop() } }
        try await runBoto3(Self.metadataScript, endpoint: fx.endpoint, args: [fx.bucketDir])
        // What `ls` shows is the objects and nothing else; they are plain files.
        let visible = (listDir(fx.bucketDir + "/meta") ?? []).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertEqual(visible, ["a.txt", "copy", "mp", "mp-copy", "plain", "repl", "rewritten"])
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/meta/a.txt"), Data("hello".utf8))
        let hasSideFolder = FileManager.default.fileExists(atPath: fx.bucketDir + "/meta/.automate-meta")
        let hasXattr = MetadataStore.readXattr(fx.bucketDir + "/meta/a.txt") != nil
        switch storage {
        case .automatic: XCTAssertTrue(hasXattr && !hasSideFolder, "metadata in user.automate.meta")
        case .sideFolder: XCTAssertTrue(!hasXattr && hasSideFolder, "metadata in .automate-meta/")
        }
        // Deleting every object removes the side folder and the emptied folders with it.
        let keys = visible.map { "meta/" + $0 }
        for k in keys { try await fx.awsOK(["s3", "rm", "s3://repo/" + k, "--only-show-errors"]) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: fx.bucketDir + "/meta"), "folder pruned with its side folder")
        fx.assertNoLeftovers()
    }

    func testMetadataInExtendedAttributes() async throws { try await runMetadataRoundTrip(.automatic) }

    func testMetadataInSideFolder() async throws { try await runMetadataRoundTrip(.sideFolder) }

    func testAwsCliAndCurlMetadata() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let work = makeTempDir("meta-cli")
        defer { try? FileManager.default.removeItem(atPath: work) }
        _ = FileManager.default.createFile(atPath: work + "/small.csv", contents: Data("a,b\n1,2\n".utf8))
        _ = FileManager.default.createFile(atPath: work + "/big.tar", contents: Data(randomBytes(9 << 20)))
        try await fx.awsOK(["s3", "cp", work + "/small.csv", "s3://repo/cli/small.csv", "--content-type", "text/csv",
                            "--metadata", "origin=cli,run=7", "--cache-control", "no-cache", "--only-show-errors"])
        // Multipart upload through awscli (9 MiB > 8 MiB threshold) with metadata.
        try await fx.awsOK(["s3", "cp", work + "/big.tar", "s3://repo/cli/big.tar", "--content-type", "application/x-tar",
                            "--metadata", "origin=cli-mp", "--only-show-errors"])
        func head(_ key: String) async throws -> [String: Any] {
            let out = try await fx.awsOK(["s3api", "head-object", "--bucket", "repo", "--key", key])
            return try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        }
        var h = try await head("cli/small.csv")
        XCTAssertEqual(h["ContentType"] as? String, "text/csv")
        XCTAssertEqual(h["CacheControl"] as? String, "no-cache")
        XCTAssertEqual(h["Metadata"] as? [String: String], ["origin": "cli", "run": "7"])
        h = try await head("cli/big.tar")
        XCTAssertEqual(h["ContentType"] as? String, "application/x-tar")
        XCTAssertEqual(h["Metadata"] as? [String: String], ["origin": "cli-mp"])
        try await fx.awsOK(["s3api", "copy-object", "--bucket", "repo", "--key", "cli/replaced", "--copy-source", "repo/cli/small.csv",
                            "--metadata-directive", "REPLACE", "--content-type", "text/plain", "--metadata", "new=yes"])
        h = try await head("cli/replaced")
        XCTAssertEqual(h["ContentType"] as? String, "text/plain")
        XCTAssertEqual(h["Metadata"] as? [String: String], ["new": "yes"])

        // curl --aws-sigv4: PUT with headers, HEAD shows them back.
        let curl = try tool("curl")
        let sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(testCreds.accessKeyId):\(testCreds.secretAccessKey)",
                   "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        let put = try await runProcess(curl, ["-sS", "-f"] + sig + ["-T", work + "/small.csv", "-H", "Content-Type: text/tab-separated-values",
                                             "-H", "x-amz-meta-tool: curl", "-H", "Content-Disposition: inline", fx.endpoint + "/repo/cli/curl.tsv"])
        XCTAssertEqual(put.status, 0, put.stderr)
        let headers = try await runProcess(curl, ["-sS", "-f", "-I"] + sig + [fx.endpoint + "/repo/cli/curl.tsv"])
        XCTAssertEqual(headers.status, 0, headers.stderr)
        let lower = headers.stdout.lowercased()
        XCTAssertTrue(lower.contains("content-type: text/tab-separated-values"), headers.stdout)
        XCTAssertTrue(lower.contains("x-amz-meta-tool: curl"), headers.stdout)
        XCTAssertTrue(lower.contains("content-disposition: inline"), headers.stdout)
        fx.assertNoLeftovers()
    }

    /// A record larger than the file system's room for extended attributes (ext4: one block) goes to the
    /// side folder instead of failing the PUT.
    func testMetadataTooLargeForXattrFallsBackToSideFile() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let disposition = "attachment; filename=\"" + String(repeating: "x", count: 6000) + "\""
        let put = try await signedRequest(port: fx.port, method: "PUT", path: "/repo/big/meta", body: Array("body".utf8),
                                          extraHeaders: [("Content-Disposition", disposition), ("x-amz-meta-k", "v")])
        XCTAssertEqual(put.status, 200, put.text)
        for method in ["HEAD", "GET"] {
            let r = try await signedRequest(port: fx.port, method: method, path: "/repo/big/meta")
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.headers["content-disposition"], disposition, method)
            XCTAssertEqual(r.headers["x-amz-meta-k"], "v", method)
            XCTAssertEqual(r.headers["etag"], put.headers["etag"], method)
        }
        fx.assertNoLeftovers()
    }
}
