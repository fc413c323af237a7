import Foundation
import Operations
import S3Client
import SidecarTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class S3ClientTests: XCTestCase {
    nonisolated(unsafe) static var moto: MotoServer?

    override class func setUp() {
        super.setUp()
        moto = try? MotoServer()
    }

    override class func tearDown() {
        moto?.stop()
        super.tearDown()
    }

    func client() throws -> S3Client {
        // S3CLIENT_TEST_ENDPOINT (+ _KEY, _SECRET) runs the same tests against another S3 API, e.g. the
        // backup-gateway in fs mode with --root.
        let env = ProcessInfo.processInfo.environment
        if let endpoint = env["S3CLIENT_TEST_ENDPOINT"] {
            return S3Client(endpoint: endpoint, credentials: S3Credentials(accessKeyID: env["S3CLIENT_TEST_KEY"] ?? "test", secretAccessKey: env["S3CLIENT_TEST_SECRET"] ?? "test"))
        }
        guard let m = Self.moto else {
            XCTFail("moto_server did not start: run scripts/install.sh --deps")
            throw XCTSkip("no moto")
        }
        return S3Client(endpoint: m.endpoint, credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"))
    }

    func testObjectLifecycle() async throws {
        let s3 = try client()
        let created = try await s3.createBucket("life")
        XCTAssertTrue(created)
        // Creating it again is fine (us-east-1 answers 200, elsewhere BucketAlreadyOwnedByYou).
        _ = try await s3.createBucket("life")
        let body = Array("héllo wörld ✓".utf8)
        try await s3.putObject(bucket: "life", key: "a dir/ü file.txt", bytes: body)
        let got = try await s3.getObject(bucket: "life", key: "a dir/ü file.txt")
        XCTAssertEqual(got, body)
        let head = try await s3.headObject(bucket: "life", key: "a dir/ü file.txt")
        XCTAssertEqual(head?.size, Int64(body.count))
        let missing = try await s3.headObject(bucket: "life", key: "nope")
        XCTAssertNil(missing)
        let listed = try await s3.listObjects(bucket: "life", prefix: "a dir/")
        XCTAssertEqual(listed.map(\.key), ["a dir/ü file.txt"])
        try await s3.deleteObject(bucket: "life", key: "a dir/ü file.txt")
        let afterDelete = try await s3.listObjects(bucket: "life")
        XCTAssertTrue(afterDelete.isEmpty)
    }

    func testTypedErrors() async throws {
        let s3 = try client()
        do {
            _ = try await s3.getObject(bucket: "no-such-bucket-here", key: "x")
            XCTFail("expected an error")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, "NoSuchBucket")
            XCTAssertEqual(e.status, 404)
            XCTAssertTrue(e.isNotFound)
        }
        try await s3.createBucket("errs")
        do {
            _ = try await s3.getObject(bucket: "errs", key: "missing/key")
            XCTFail("expected an error")
        } catch let e as S3Error {
            XCTAssertEqual(e.code, "NoSuchKey")
            XCTAssertFalse(e.message.isEmpty)
        }
    }

    func testStreamingPutAndGet() async throws {
        let s3 = try client()
        try await s3.createBucket("stream")
        let total = 3_000_000
        let sent = try await runBlocking { _ -> Int in
            let offset = Locked(0)  // the pull callback runs on libcurl's thread, one call at a time
            try s3.putObjectSync(bucket: "stream", key: "big", length: Int64(total)) { buf in
                offset.withLock { offset in
                    let n = min(buf.count, total - offset)
                    for i in 0..<n { buf[i] = UInt8((offset + i) % 251) }
                    offset += n
                    return n
                }
            }
            return offset.value
        }
        XCTAssertEqual(sent, total)
        let (count, ok) = try await runBlocking { _ -> (Int64, Bool) in
            var position = 0
            var ok = true
            let n = try s3.getObjectSync(bucket: "stream", key: "big") { chunk in
                for b in chunk { if b != UInt8(position % 251) { ok = false }; position += 1 }
            }
            return (n, ok)
        }
        XCTAssertEqual(count, Int64(total))
        XCTAssertTrue(ok)
    }

    func testMultipartFromAsyncStreamAndAbort() async throws {
        let s3 = try client()
        try await s3.createBucket("multi")
        // 13 MiB in 1 MiB chunks: 5 MiB parts -> 3 parts.
        let chunks = AsyncStream<[UInt8]> { c in
            for i in 0..<13 { c.yield([UInt8](repeating: UInt8(i), count: 1 << 20)) }
            c.finish()
        }
        let result = try await s3.uploadMultipart(bucket: "multi", key: "m/obj", partSize: 5 << 20, from: chunks)
        XCTAssertEqual(result.parts, 3)
        XCTAssertEqual(result.size, 13 << 20)
        let head = try await s3.headObject(bucket: "multi", key: "m/obj")
        XCTAssertEqual(head?.size, 13 << 20)
        // The object keeps the content type CreateMultipartUpload gave it (see testPostSendsNoFormContentType).
        let env = ProcessInfo.processInfo.environment
        let endpoint = try env["S3CLIENT_TEST_ENDPOINT"] ?? XCTUnwrap(Self.moto).endpoint
        let raw = try await runBlocking { _ in
            try performHTTP(HTTPRequest(method: "HEAD", url: endpoint + "/multi/m/obj", sigV4: (
                "aws:amz:us-east-1:s3", "\(env["S3CLIENT_TEST_KEY"] ?? "test"):\(env["S3CLIENT_TEST_SECRET"] ?? "test")")))
        }
        XCTAssertEqual(raw.status, 200)
        XCTAssertNotEqual(raw.headers["content-type"], "application/x-www-form-urlencoded")
        let got = try await s3.getObject(bucket: "multi", key: "m/obj")
        XCTAssertEqual(got[6 << 20], 6)
        XCTAssertEqual(got[(13 << 20) - 1], 12)

        // A failing source aborts: nothing under the key.
        struct Boom: Error {}
        let failing = AsyncThrowingStream<[UInt8], Error> { c in
            for _ in 0..<7 { c.yield([UInt8](repeating: 1, count: 1 << 20)) }
            c.finish(throwing: Boom())
        }
        do {
            _ = try await s3.uploadMultipart(bucket: "multi", key: "m/failed", partSize: 5 << 20, from: failing)
            XCTFail("expected the error")
        } catch is Boom {}
        let failed = try await s3.headObject(bucket: "multi", key: "m/failed")
        XCTAssertNil(failed)
        let open = try await runBlocking { _ in try s3.listMultipartUploadsSync(bucket: "multi", prefix: "m/") }
        XCTAssertTrue(open.isEmpty, "aborted upload still listed: \(open)")
    }

    /// A transfer to a peer that never answers, made inside a pool job (as the sidecars make theirs), stops
    /// within about a second of its task's cancellation (libcurl's progress callback sees the job
    /// cancelled); without it the call would wait for the low-speed limit (two minutes). So does an
    /// `uploadMultipart` whose upload cannot even be created.
    func testCancelStopsATransferThatGetsNoAnswer() async throws {
        // A listening socket that never accepts: the kernel completes the connection, nothing answers.
        let listener = try LoopbackListener()
        let silent = S3Client(endpoint: "http://127.0.0.1:\(listener.port)",
                              credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test"))
        for operation in ["get", "multipart"] {
            let started = ContinuousClock.now
            let call = Task {
                if operation == "get" {
                    _ = try await runBlocking { _ in try silent.getObjectSync(bucket: "b", key: "k") }
                } else {
                    let chunks = AsyncStream<[UInt8]> { $0.yield([UInt8](repeating: 1, count: 1 << 20)); $0.finish() }
                    _ = try await silent.uploadMultipart(bucket: "b", key: "k", partSize: 5 << 20, from: chunks)
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            call.cancel()
            do {
                try await call.value
                XCTFail("\(operation): a peer that never answers gave a result")
            } catch {
                XCTAssertTrue(error is CancellationError, "\(operation): \(error)")
            }
            let took = ContinuousClock.now - started
            XCTAssertLessThan(took, .seconds(3), "\(operation): cancelling took \(took)")
        }
    }
}

extension S3ClientTests {
    /// libcurl adds `Content-Type: application/x-www-form-urlencoded` to a POST that names none. The
    /// gateway's proxy forwards CreateMultipartUpload through the same wrapper, and S3 would give the
    /// object that type: the wrapper must send no content type the caller did not give.
    func testPostSendsNoFormContentType() async throws {
        let listener = try LoopbackListener()
        async let request = runBlocking { _ in try listener.acceptOneRequest() }
        let response = try await runBlocking { _ in
            try performHTTP(HTTPRequest(method: "POST", url: "http://127.0.0.1:\(listener.port)/b/k?uploads", body: .bytes([])))
        }
        XCTAssertEqual(response.status, 200)
        let head = try await request.lowercased()
        XCTAssertTrue(head.hasPrefix("post /b/k?uploads http/1.1\r\n"), head)
        XCTAssertFalse(head.contains("content-type:"), head)
    }
}

/// A TCP socket listening on a free loopback port, for tests that need a peer the test controls.
final class LoopbackListener: @unchecked Sendable {  // `fd` is fixed; one test uses it at a time
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else {
            if fd >= 0 { close(fd) }
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }

    /// Accepts one connection, reads its request head, answers `200 OK` with an empty body, and returns the head.
    func acceptOneRequest() throws -> String {
        let client = accept(fd, nil, nil)
        guard client >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(client) }
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !head.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
            let n = read(client, &buffer, buffer.count)
            guard n > 0 else { break }
            head += buffer[..<n]
        }
        let answer = Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
        _ = answer.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
        return String(decoding: head, as: UTF8.self)
    }
}
