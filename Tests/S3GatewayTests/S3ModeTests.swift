import Foundation
import Logging
import XCTest
@testable import S3Gateway
import SidecarTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// moto_server on a free loopback port, stopped at the end.
final class MotoServer: @unchecked Sendable {
    let process: Process
    let port: Int
    init(process: Process, port: Int) { self.process = process; self.port = port }

    static func start() async throws -> MotoServer {
        let exe = try tool("moto_server")
        let port = Fixture.freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["-H", "127.0.0.1", "-p", String(port)]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let m = MotoServer(process: p, port: port)
        for _ in 0..<200 {
            if let r = try? await rawRequest(port: port, method: "GET", path: "/moto-api/", headers: []), r.status > 0 { return m }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        m.stop()
        XCTFail("moto_server did not start on port \(port)")
        throw XCTSkip("moto_server did not start")
    }

    func stop() {
        // moto_server does not always stop on SIGTERM; it keeps nothing worth a clean stop.
        let pid = process.processIdentifier
        kill(pid, SIGKILL)
        var st: Int32 = 0
        _ = waitpid(pid, &st, 0)
    }
}

final class S3ModeTests: XCTestCase {
    func testProxyToMotoUpstream() async throws {
        let moto = try await MotoServer.start()
        defer { moto.stop() }
        let upstreamCreds = Credentials(accessKeyId: "AKIDREALUPSTREAM", secretAccessKey: "real-upstream-secret")
        let motoURL = "http://127.0.0.1:\(moto.port)"
        let py = try tool("python3")
        let direct = """
        import boto3, sys, json
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='AKIDREALUPSTREAM', aws_secret_access_key='real-upstream-secret', region_name='us-east-1')
        cmd = sys.argv[2]
        if cmd == 'create':
            s3.create_bucket(Bucket='upstream')
        elif cmd == 'keys':
            print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='upstream').get('Contents', [])]))
        elif cmd == 'get':
            sys.stdout.buffer.write(s3.get_object(Bucket='upstream', Key=sys.argv[3])['Body'].read())
        """
        let created = try await runProcess(py, ["-c", direct, motoURL, "create"])
        XCTAssertEqual(created.status, 0, created.stderr)

        var logger = Logger(label: "gw-s3-test")
        logger.logLevel = .critical
        let gw = try await RunningGateway.start(GatewayConfig(port: 0, mode: .s3(UpstreamConfig(
            endpoint: motoURL, region: "us-east-1", bucket: "upstream", prefix: "gw/", pathStyle: true, credentials: upstreamCreds)),
            credentials: testCreds), logger: logger)
        defer { Task { await gw.stop() } }
        let env = ["AWS_ACCESS_KEY_ID": testCreds.accessKeyId, "AWS_SECRET_ACCESS_KEY": testCreds.secretAccessKey, "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"]
        let aws = try tool("aws")
        let ep = ["--endpoint-url", "http://127.0.0.1:\(gw.port)"]
        let work = makeTempDir("s3mode")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let small = Data(randomBytes(100_000)), big = Data(randomBytes(9 << 20))
        _ = FileManager.default.createFile(atPath: work + "/small", contents: small)
        _ = FileManager.default.createFile(atPath: work + "/big", contents: big)

        for (src, key) in [("small", "20260302081223/svc/metadata.json"), ("big", "20260302081223/svc/files/big.tar.zst")] {
            let r = try await runProcess(aws, ep + ["s3", "cp", work + "/" + src, "s3://upstream/" + key, "--only-show-errors"], env: env)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        // In moto's bucket, under the prefix, byte-equal (checked with the real key, directly).
        let keys = try await runProcess(py, ["-c", direct, motoURL, "keys"])
        XCTAssertEqual(keys.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       "[\"gw/20260302081223/svc/files/big.tar.zst\", \"gw/20260302081223/svc/metadata.json\"]", keys.stderr)
        let got = try await runProcess(py, ["-c", direct + "\n", motoURL, "get", "gw/20260302081223/svc/metadata.json"])
        XCTAssertEqual(got.status, 0, got.stderr)
        // Back through the gateway: list without the prefix, download byte-equal.
        let ls = try await runProcess(aws, ep + ["s3", "ls", "s3://upstream", "--recursive"], env: env)
        XCTAssertEqual(ls.status, 0, ls.stderr)
        XCTAssertTrue(ls.stdout.contains(" 20260302081223/svc/metadata.json") && !ls.stdout.contains("gw/"), ls.stdout)
        let dl = try await runProcess(aws, ep + ["s3", "cp", "s3://upstream/20260302081223/svc/files/big.tar.zst", work + "/big.back", "--only-show-errors"], env: env)
        XCTAssertEqual(dl.status, 0, dl.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: work + "/big.back"), big)
        let head = try await runProcess(aws, ep + ["s3api", "head-object", "--bucket", "upstream", "--key", "20260302081223/svc/metadata.json"], env: env)
        XCTAssertTrue(head.stdout.contains(Digests.md5Hex(Array(small))), head.stdout + head.stderr)
        let range = try await runProcess(aws, ep + ["s3api", "get-object", "--bucket", "upstream", "--key", "20260302081223/svc/metadata.json", "--range", "bytes=10-19", work + "/r"], env: env)
        XCTAssertEqual(range.status, 0, range.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: work + "/r"), small[10...19])
        // Copy and delete through the gateway.
        let cp = try await runProcess(aws, ep + ["s3api", "copy-object", "--bucket", "upstream", "--key", "copy", "--copy-source", "upstream/20260302081223/svc/metadata.json"], env: env)
        XCTAssertEqual(cp.status, 0, cp.stderr)
        let rm = try await runProcess(aws, ep + ["s3", "rm", "s3://upstream/20260302081223/svc/metadata.json"], env: env)
        XCTAssertEqual(rm.status, 0, rm.stderr)
        let keys2 = try await runProcess(py, ["-c", direct, motoURL, "keys"])
        XCTAssertEqual(keys2.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "[\"gw/20260302081223/svc/files/big.tar.zst\", \"gw/copy\"]")
        // Upstream errors come back as S3 errors.
        let missing = try await signedRequest(port: gw.port, method: "GET", path: "/upstream/nope")
        XCTAssertEqual(missing.status, 404); XCTAssertEqual(missing.errorCode, "NoSuchKey", missing.text)

        // Wrong gateway credentials never reach upstream.
        let wrong = Credentials(accessKeyId: testCreds.accessKeyId, secretAccessKey: "wrong")
        let w = try await signedRequest(port: gw.port, method: "PUT", path: "/upstream/forged", body: Array("x".utf8), creds: wrong)
        XCTAssertEqual(w.errorCode, "SignatureDoesNotMatch", w.text)
        // The upstream's real key is not the gateway's key either.
        let r2 = try await signedRequest(port: gw.port, method: "PUT", path: "/upstream/forged2", body: Array("x".utf8), creds: upstreamCreds)
        XCTAssertEqual(r2.errorCode, "InvalidAccessKeyId", r2.text)
        // A body failing its checksum is not stored upstream.
        let bad = try await signedRequest(port: gw.port, method: "PUT", path: "/upstream/badbody", body: Array("abc".utf8), wireBody: Array("abd".utf8))
        XCTAssertEqual(bad.errorCode, "XAmzContentSHA256Mismatch", bad.text)
        let keys3 = try await runProcess(py, ["-c", direct, motoURL, "keys"])
        XCTAssertFalse(keys3.stdout.contains("forged") || keys3.stdout.contains("badbody"), keys3.stdout)
    }

    /// Metadata, conditional writes, UploadPartCopy and CreateBucket pass through the proxy to moto.
    func testFidelityPassesThroughToMoto() async throws {
        let moto = try await MotoServer.start()
        defer { moto.stop() }
        let motoURL = "http://127.0.0.1:\(moto.port)"
        let upstreamCreds = Credentials(accessKeyId: "AKIDREALUPSTREAM", secretAccessKey: "real-upstream-secret")
        let created = try await runProcess(try tool("python3"), ["-c", """
            import boto3, sys
            boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='AKIDREALUPSTREAM', aws_secret_access_key='real-upstream-secret',
                         region_name='us-east-1').create_bucket(Bucket='upstream')
            """, motoURL])
        XCTAssertEqual(created.status, 0, created.stderr)
        var logger = Logger(label: "gw-s3-test")
        logger.logLevel = .critical
        let gw = try await RunningGateway.start(GatewayConfig(port: 0, mode: .s3(UpstreamConfig(
            endpoint: motoURL, region: "us-east-1", bucket: "upstream", prefix: "gw/", pathStyle: true, credentials: upstreamCreds)),
            credentials: testCreds), logger: logger)
        defer { Task { await gw.stop() } }
        try await runBoto3("""
        import email.utils
        direct = boto3.client('s3', endpoint_url=sys.argv[3], aws_access_key_id='AKIDREALUPSTREAM', aws_secret_access_key='real-upstream-secret', region_name='us-east-1')
        B = 'upstream'
        exp = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        e1 = s3.put_object(Bucket=B, Key='m/a', Body=b'hello', ContentType='text/plain', CacheControl='max-age=5', ContentDisposition='inline',
                           ContentEncoding='identity', Expires=exp, ContentLanguage='en', Metadata={'k': 'v'})['ETag']
        for h in (s3.head_object(Bucket=B, Key='m/a'), s3.get_object(Bucket=B, Key='m/a'), direct.head_object(Bucket=B, Key='gw/m/a')):
            assert h['ContentType'] == 'text/plain' and h['Metadata'] == {'k': 'v'} and h['CacheControl'] == 'max-age=5', h
            assert h['ContentDisposition'] == 'inline' and h['ContentEncoding'] == 'identity' and h['ContentLanguage'] == 'en', h
            assert h['ResponseMetadata']['HTTPHeaders']['expires'] == email.utils.format_datetime(exp, usegmt=True), h
        s3.copy_object(Bucket=B, Key='m/r', CopySource={'Bucket': B, 'Key': 'm/a'}, MetadataDirective='REPLACE', ContentType='application/json', Metadata={'x': 'y'})
        h = s3.head_object(Bucket=B, Key='m/r')
        assert h['ContentType'] == 'application/json' and h['Metadata'] == {'x': 'y'}, h
        # Conditional writes are answered by the upstream.
        assert code(s3.put_object, Bucket=B, Key='m/a', Body=b'x', IfNoneMatch='*') == ('PreconditionFailed', 412)
        assert code(s3.put_object, Bucket=B, Key='m/a', Body=b'x', IfMatch='"0123456789abcdef0123456789abcdef"') == ('PreconditionFailed', 412)
        assert code(s3.put_object, Bucket=B, Key='m/missing', Body=b'x', IfMatch=e1) == ('NoSuchKey', 404)
        s3.put_object(Bucket=B, Key='m/a', Body=b'two', IfMatch=e1)
        # UploadPartCopy, re-signed: the copy source gets the upstream prefix.
        src = 'src/special key+?&=\\u00fc'
        data = bytes(range(256)) * (24 * 1024)
        s3.put_object(Bucket=B, Key=src, Body=data)
        u = s3.create_multipart_upload(Bucket=B, Key='m/upc', Metadata={'mp': '1'})['UploadId']
        cs = {'Bucket': B, 'Key': src}
        r1 = s3.upload_part_copy(Bucket=B, Key='m/upc', UploadId=u, PartNumber=1, CopySource=cs, CopySourceRange='bytes=0-5242879')
        r2 = s3.upload_part_copy(Bucket=B, Key='m/upc', UploadId=u, PartNumber=2, CopySource=cs)
        assert r1['CopyPartResult']['ETag'].strip('"') == hashlib.md5(data[:5 << 20]).hexdigest(), r1
        s3.complete_multipart_upload(Bucket=B, Key='m/upc', UploadId=u, MultipartUpload={'Parts': [
            {'PartNumber': 1, 'ETag': r1['CopyPartResult']['ETag']}, {'PartNumber': 2, 'ETag': r2['CopyPartResult']['ETag']}]})
        g = s3.get_object(Bucket=B, Key='m/upc')
        assert g['Body'].read() == data[:5 << 20] + data and g['Metadata'] == {'mp': '1'}, g['Metadata']
        assert direct.head_object(Bucket=B, Key='gw/m/upc')['ContentLength'] == (5 << 20) + len(data)
        # CreateBucket on the upstream bucket in us-east-1: 200, nothing touched.
        s3.create_bucket(Bucket=B)
        assert s3.get_object(Bucket=B, Key='m/a')['Body'].read() == b'two'
        """, endpoint: "http://127.0.0.1:\(gw.port)", args: [motoURL])
    }
}
