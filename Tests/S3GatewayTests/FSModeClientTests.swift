import Foundation
import XCTest
@testable import S3Gateway

/// Real clients (awscli, boto3, curl) against the gateway in filesystem mode.
final class FSModeClientTests: XCTestCase {
    func testAwsCliOperations() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let work = makeTempDir("cli")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let data = randomBytes(300_000)
        _ = FileManager.default.createFile(atPath: work + "/a.bin", contents: Data(data))

        // cp up, ls, cp down
        try await fx.awsOK(["s3", "cp", work + "/a.bin", "s3://repo/dir/a.bin", "--only-show-errors"])
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/dir/a.bin"), Data(data), "stored as a plain file")
        let ls = try await fx.awsOK(["s3", "ls", "s3://repo/dir/"])
        XCTAssertTrue(ls.contains("300000 a.bin"), ls)
        try await fx.awsOK(["s3", "cp", "s3://repo/dir/a.bin", work + "/a.back", "--only-show-errors"])
        XCTAssertEqual(FileManager.default.contents(atPath: work + "/a.back"), Data(data))

        // put-object with --content-md5, head-object ETag = MD5
        let md5 = Digests.md5Base64(data)
        try await fx.awsOK(["s3api", "put-object", "--bucket", "repo", "--key", "md5/obj", "--body", work + "/a.bin", "--content-md5", md5])
        let head = try await fx.awsOK(["s3api", "head-object", "--bucket", "repo", "--key", "md5/obj"])
        XCTAssertTrue(head.contains(Digests.md5Hex(data)), head)
        XCTAssertTrue(head.contains("\"ContentLength\": 300000"), head)

        // get-object --range
        try await fx.awsOK(["s3api", "get-object", "--bucket", "repo", "--key", "md5/obj", "--range", "bytes=100-199", work + "/range"])
        XCTAssertEqual(FileManager.default.contents(atPath: work + "/range"), Data(data[100...199]))

        // copy-object
        try await fx.awsOK(["s3api", "copy-object", "--bucket", "repo", "--key", "copy/of/obj", "--copy-source", "repo/md5/obj"])
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/copy/of/obj"), Data(data))

        // sync a folder up and back down
        try FileManager.default.createDirectory(atPath: work + "/tree/sub", withIntermediateDirectories: true)
        for i in 0..<5 { _ = FileManager.default.createFile(atPath: work + "/tree/sub/f\(i).txt", contents: Data("file \(i) with spaces + plus".utf8)) }
        _ = FileManager.default.createFile(atPath: work + "/tree/odd name+%.txt", contents: Data("odd".utf8))
        try await fx.awsOK(["s3", "sync", work + "/tree", "s3://repo/tree", "--only-show-errors"])
        XCTAssertEqual(FileManager.default.contents(atPath: fx.bucketDir + "/tree/odd name+%.txt"), Data("odd".utf8))
        try await fx.awsOK(["s3", "sync", "s3://repo/tree", work + "/tree-back", "--only-show-errors"])
        XCTAssertEqual(walk(work + "/tree-back"), walk(work + "/tree"))
        let again = try await fx.awsOK(["s3", "sync", work + "/tree", "s3://repo/tree"])
        XCTAssertEqual(again.trimmingCharacters(in: .whitespacesAndNewlines), "", "second sync uploads nothing")

        // list-objects-v2 with delimiter and max-keys pagination
        var seen: [String] = []
        var token: String? = nil
        var pages = 0
        repeat {
            var args = ["s3api", "list-objects-v2", "--bucket", "repo", "--prefix", "tree/sub/", "--max-keys", "2", "--no-paginate"]
            if let t = token { args += ["--continuation-token", t] }
            let out = try await fx.awsOK(args)
            let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
            seen += ((obj["Contents"] as? [[String: Any]]) ?? []).map { $0["Key"] as! String }
            token = obj["NextContinuationToken"] as? String
            pages += 1
        } while token != nil && pages < 10
        XCTAssertEqual(seen, (0..<5).map { "tree/sub/f\($0).txt" })
        XCTAssertEqual(pages, 3)
        let delim = try await fx.awsOK(["s3api", "list-objects-v2", "--bucket", "repo", "--delimiter", "/"])
        let dobj = try JSONSerialization.jsonObject(with: Data(delim.utf8)) as! [String: Any]
        let prefixes = ((dobj["CommonPrefixes"] as? [[String: Any]]) ?? []).map { $0["Prefix"] as! String }
        XCTAssertEqual(prefixes, ["copy/", "dir/", "md5/", "tree/"])
        // V1 listing with marker
        let v1 = try await fx.awsOK(["s3api", "list-objects", "--bucket", "repo", "--prefix", "tree/sub/", "--marker", "tree/sub/f2.txt"])
        let v1obj = try JSONSerialization.jsonObject(with: Data(v1.utf8)) as! [String: Any]
        XCTAssertEqual(((v1obj["Contents"] as? [[String: Any]]) ?? []).map { $0["Key"] as! String }, ["tree/sub/f3.txt", "tree/sub/f4.txt"])

        // delete-objects, rm
        try await fx.awsOK(["s3api", "delete-objects", "--bucket", "repo", "--delete",
                            "{\"Objects\":[{\"Key\":\"tree/sub/f0.txt\"},{\"Key\":\"tree/sub/f1.txt\"}],\"Quiet\":false}"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: fx.bucketDir + "/tree/sub/f0.txt"))
        try await fx.awsOK(["s3", "rm", "s3://repo/tree", "--recursive", "--only-show-errors"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: fx.bucketDir + "/tree"), "empty folders are pruned")

        // buckets: mb, ls, rb (not empty → BucketNotEmpty)
        try await fx.awsOK(["s3", "mb", "s3://newbucket"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: fx.root + "/newbucket"))
        let buckets = try await fx.awsOK(["s3", "ls"])
        XCTAssertTrue(buckets.contains("newbucket") && buckets.contains("repo"), buckets)
        let rb = try await fx.aws(["s3", "rb", "s3://repo"])
        XCTAssertNotEqual(rb.status, 0)
        XCTAssertTrue(rb.stderr.contains("BucketNotEmpty"), rb.stderr)
        try await fx.awsOK(["s3", "rb", "s3://newbucket"])
        fx.assertNoLeftovers()
    }

    func testAwsCliMultipartUpload() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let work = makeTempDir("mp")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let size = 64 << 20 | 12345
        let data = Data(randomBytes(size))
        _ = FileManager.default.createFile(atPath: work + "/big", contents: data)
        try await fx.awsOK(["s3", "cp", work + "/big", "s3://repo/20260302081223/svc/files/big.tar.zst", "--only-show-errors"])
        let stored = fx.bucketDir + "/20260302081223/svc/files/big.tar.zst"
        XCTAssertEqual(FileManager.default.contents(atPath: stored), data)
        let head = try await fx.awsOK(["s3api", "head-object", "--bucket", "repo", "--key", "20260302081223/svc/files/big.tar.zst"])
        XCTAssertTrue(head.contains("-9\\\""), "multipart ETag md5-of-md5s-N (8 MiB parts): \(head)")
        try await fx.awsOK(["s3", "cp", "s3://repo/20260302081223/svc/files/big.tar.zst", work + "/back", "--only-show-errors"])
        XCTAssertEqual(FileManager.default.contents(atPath: work + "/back"), data)
        fx.assertNoLeftovers()
    }

    func testBoto3AndPresignedCurl() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let script = """
        import boto3, io, hashlib, sys, json
        from botocore.config import Config
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                          region_name='us-east-1', config=Config(signature_version='s3v4', s3={'addressing_style': 'path'}))
        body = bytes(range(256)) * 4000
        r = s3.put_object(Bucket='repo', Key='boto/one.bin', Body=body)
        assert r['ETag'] == '"%s"' % hashlib.md5(body).hexdigest(), r['ETag']
        assert s3.get_object(Bucket='repo', Key='boto/one.bin')['Body'].read() == body
        s3.put_object(Bucket='repo', Key='boto/crc32c', Body=b'abc' * 1000, ChecksumAlgorithm='SHA1')
        s3.put_object(Bucket='repo', Key='boto/sha256', Body=b'abc' * 1000, ChecksumAlgorithm='SHA256')
        big = b'z' * (12 * 1024 * 1024 + 7)
        s3.upload_fileobj(io.BytesIO(big), 'repo', 'boto/big.bin')
        got = io.BytesIO(); s3.download_fileobj('repo', 'boto/big.bin', got)
        assert got.getvalue() == big
        try:
            s3.put_object(Bucket='repo', Key='boto/one.bin', Body=b'new', IfNoneMatch='*')
            raise SystemExit('conditional put should fail')
        except s3.exceptions.ClientError as e:
            assert e.response['Error']['Code'] == 'PreconditionFailed', e.response
        try:
            s3.get_object(Bucket='repo', Key='boto/missing')
            raise SystemExit('should be missing')
        except s3.exceptions.NoSuchKey:
            pass
        keys = [o['Key'] for o in s3.list_objects_v2(Bucket='repo', Prefix='boto/')['Contents']]
        assert keys == ['boto/big.bin', 'boto/crc32c', 'boto/one.bin', 'boto/sha256'], keys
        print(s3.generate_presigned_url('get_object', Params={'Bucket': 'repo', 'Key': 'boto/one.bin'}, ExpiresIn=300))
        """
        let r = try await runProcess(try tool("python3"), ["-c", script, fx.endpoint, testCreds.accessKeyId, testCreds.secretAccessKey])
        XCTAssertEqual(r.status, 0, r.stderr)
        let url = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(url.contains("X-Amz-Signature="), url)
        let out = makeTempDir("presign") + "/got"
        let c = try await runProcess(try tool("curl"), ["-sS", "-o", out, "-w", "%{http_code}", url])
        XCTAssertEqual(c.stdout, "200", c.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: out), Data(Array(0...255).map { UInt8($0) } .repeated(4000)))
        fx.assertNoLeftovers()
    }

    func testHandMadeRepositoryListsAndReads() async throws {
        let repo = makeTempDir("handmade")
        defer { try? FileManager.default.removeItem(atPath: repo) }
        // A repository written by plain file copies, as DESIGN.md lays it out.
        var files: [String: Data] = [
            "20260302081223/deployment-service/metadata.json": Data("{\"services\":[]}".utf8),
            "20260302081223/pg-sidecar/pg_data/app.fc.zst": Data(randomBytes(70_000)),
            "20260302081223/svc/files/blob.tar.zst": Data(randomBytes(1_500_000)),
            "20260302081223/.status": Data("completed".utf8),
            "20260302081223/checksums.json": Data("{}".utf8),
            "automate-elasticsearch-data/idx/ndjson": Data("{}\n".utf8),
        ]
        for (k, v) in files {
            let p = repo + "/" + k
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: p, contents: v)
        }
        let fx = try await FSFixture.start(extraBuckets: ["backups": repo])
        defer { Task { await fx.stop() } }
        let ls = try await fx.awsOK(["s3", "ls", "s3://backups", "--recursive"])
        let listed = ls.split(separator: "\n").map { String($0.split(separator: " ", maxSplits: 3).last!) }
        XCTAssertEqual(listed, files.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        let work = makeTempDir("handmade-back")
        defer { try? FileManager.default.removeItem(atPath: work) }
        try await fx.awsOK(["s3", "cp", "s3://backups", work, "--recursive", "--only-show-errors"])
        for (k, v) in files { XCTAssertEqual(FileManager.default.contents(atPath: work + "/" + k), v, k) }
        // HEAD of a hand-copied file: MD5 computed on demand.
        let head = try await fx.awsOK(["s3api", "head-object", "--bucket", "backups", "--key", "20260302081223/svc/files/blob.tar.zst"])
        XCTAssertTrue(head.contains(Digests.md5Hex(Array(files["20260302081223/svc/files/blob.tar.zst"]!))), head)
        // Files without metadata read back as application/octet-stream, with no x-amz-meta-*.
        let headObj = try JSONSerialization.jsonObject(with: Data(head.utf8)) as! [String: Any]
        XCTAssertEqual(headObj["ContentType"] as? String, "application/octet-stream")
        XCTAssertEqual((headObj["Metadata"] as? [String: String]) ?? [:], [:])
        // An object written through the gateway is a plain file in the folder.
        files["new/object"] = Data("through the gateway".utf8)
        _ = FileManager.default.createFile(atPath: work + "/obj", contents: files["new/object"])
        try await fx.awsOK(["s3", "cp", work + "/obj", "s3://backups/new/object", "--only-show-errors"])
        XCTAssertEqual(try String(contentsOfFile: repo + "/new/object", encoding: .utf8), "through the gateway")
        XCTAssertEqual(walk(repo).filter { $0.contains(".automate") }, [])
    }
}

extension Array {
    func repeated(_ n: Int) -> [Element] { (0..<n).flatMap { _ in self } }
}
