import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import S3Client
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// GET bodies sent from the object's file by the connection (sendfile): the region goes out before the
/// response's end and fills its Content-Length exactly, its descriptor is closed whatever happens to the
/// connection, and a real gateway process keeps no descriptor after clients that hang up mid-body.
final class FSModeSendfileTests: XCTestCase {
    /// A file of `n` known bytes and an open descriptor duplicated for a region (the region owns it).
    private func region(_ dir: String, size n: Int, from: Int, to: Int) throws -> FileRegion {
        let path = dir + "/object"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(randomBytes(n))))
        let fd = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        return FileRegion(fileHandle: NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd), readerIndex: from, endIndex: to)
    }

    private func pipeline() throws -> (EmbeddedChannel, FileRegionWriter) {
        let channel = EmbeddedChannel()
        let writer = FileRegionWriter()
        try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
        try channel.pipeline.syncOperations.addHandler(writer)
        return (channel, writer)
    }

    private func head(contentLength: Int) -> HTTPServerResponsePart {
        .head(HTTPResponseHead(version: .http1_1, status: .partialContent, headers: ["Content-Length": String(contentLength)]))
    }

    /// Head, then the region exactly where the body goes, then the end; the descriptor is closed once sent.
    func testRegionIsWrittenBeforeTheEndAndReleased() throws {
        let dir = makeTempDir("sendfile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (channel, writer) = try pipeline()
        let r = try region(dir, size: 1 << 20, from: 1000, to: 301_000)
        try channel.writeOutbound(head(contentLength: 300_000))
        let sent = channel.eventLoop.makePromise(of: Void.self)
        XCTAssertTrue(writer.accept(r, sent: sent))
        let second = channel.eventLoop.makePromise(of: Void.self)
        XCTAssertFalse(writer.accept(r, sent: second), "a second region for one response was taken")
        second.succeed()
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        guard case .byteBuffer(var headBytes) = try channel.readOutbound(as: IOData.self) else { return XCTFail("no head") }
        XCTAssertTrue(headBytes.readString(length: headBytes.readableBytes)!.hasPrefix("HTTP/1.1 206"))
        guard case .fileRegion(let body) = try channel.readOutbound(as: IOData.self) else { return XCTFail("the body is not a file region") }
        XCTAssertEqual(body.readerIndex, 1000)
        XCTAssertEqual(body.endIndex, 301_000)
        if case .byteBuffer(let end) = try channel.readOutbound(as: IOData.self) { XCTAssertEqual(end.readableBytes, 0) }
        XCTAssertNil(try channel.readOutbound(as: IOData.self))
        XCTAssertNoThrow(try sent.futureResult.wait())
        XCTAssertFalse(r.fileHandle.isOpen, "the region's descriptor was not closed after sending")
        // The next response has no region: its end goes out alone.
        try channel.writeOutbound(head(contentLength: 0))
        try channel.writeOutbound(HTTPServerResponsePart.end(nil))
        _ = try channel.readOutbound(as: IOData.self)
        if case .fileRegion = try channel.readOutbound(as: IOData.self) { XCTFail("a region was sent twice") }
        XCTAssertTrue(try channel.finish().isClean)
    }

    /// A region that does not fill the declared Content-Length is never sent: the request fails, the
    /// connection closes, the descriptor is closed.
    func testRegionOfTheWrongLengthClosesTheConnection() throws {
        let dir = makeTempDir("sendfile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (channel, writer) = try pipeline()
        let r = try region(dir, size: 4096, from: 0, to: 4096)
        try channel.writeOutbound(head(contentLength: 5000))
        let sent = channel.eventLoop.makePromise(of: Void.self)
        XCTAssertTrue(writer.accept(r, sent: sent))
        XCTAssertThrowsError(try channel.writeOutbound(HTTPServerResponsePart.end(nil))) { error in
            XCTAssertTrue(error is FileRegionLengthError, "\(error)")
        }
        XCTAssertThrowsError(try sent.futureResult.wait())
        XCTAssertFalse(r.fileHandle.isOpen)
        XCTAssertFalse(channel.isActive, "the connection stayed open")
    }

    /// A connection that goes while a region waits for its response's end closes the region's descriptor and
    /// fails whoever waits for it.
    func testWaitingRegionIsReleasedWhenTheConnectionGoes() throws {
        let dir = makeTempDir("sendfile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (channel, writer) = try pipeline()
        let r = try region(dir, size: 4096, from: 0, to: 4096)
        try channel.writeOutbound(head(contentLength: 4096))
        let sent = channel.eventLoop.makePromise(of: Void.self)
        XCTAssertTrue(writer.accept(r, sent: sent))
        _ = try channel.finish(acceptAlreadyClosed: true)
        XCTAssertThrowsError(try sent.futureResult.wait())
        XCTAssertFalse(r.fileHandle.isOpen)
    }

    /// Against the gateway process: whole GETs and ranges of a 48 MiB object come back exact; clients that
    /// hang up after the first MiB are logged as aborted, and the gateway's open descriptors come back to what
    /// they were.
    func testAbortedGetsLeaveNoDescriptorOpen() async throws {
        let (root, creds) = try makeGatewayRoot("sendfile-proc")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let gw = try await GatewayProcess.start(root: root, credentialsFile: creds, logLevel: "info")
        defer { gw.kill9() }
        let data = randomBytes(48 << 20)
        let put = try await signedRequest(port: gw.port, method: "PUT", path: "/repo/big", body: data, payloadHash: "UNSIGNED-PAYLOAD")
        XCTAssertEqual(put.status, 200, put.text)

        let whole = try await signedRequest(port: gw.port, method: "GET", path: "/repo/big")
        XCTAssertEqual(whole.status, 200)
        XCTAssertEqual(whole.headers["content-length"], String(data.count))
        XCTAssertTrue(whole.body == data, "the whole object differs")
        for (from, to) in [(0, 0), (1, 1_000_000), ((48 << 20) - 10, (48 << 20) - 1), (7 << 20, (9 << 20) + 17)] {
            let got = try await signedRequest(port: gw.port, method: "GET", path: "/repo/big", extraHeaders: [("Range", "bytes=\(from)-\(to)")])
            XCTAssertEqual(got.status, 206)
            XCTAssertEqual(got.headers["content-range"], "bytes \(from)-\(to)/\(data.count)")
            XCTAssertTrue(got.body == Array(data[from...to]), "range \(from)-\(to) differs")
        }

        let pid = gw.process.processIdentifier
        let before = openDescriptors(pid)
        for _ in 0..<5 {
            let read = try await getThenHangUp(port: gw.port, path: "/repo/big", after: 1 << 20)
            XCTAssertGreaterThanOrEqual(read, 1 << 20)
        }
        // The aborted bodies end when the gateway sees the connection gone; wait for that, with a deadline.
        let deadline = Date().addingTimeInterval(20)
        var now = openDescriptors(pid)
        while now > before && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
            now = openDescriptors(pid)
        }
        now = openDescriptors(pid)
        XCTAssertLessThanOrEqual(now, before, "the gateway holds \(now - before) more descriptors after 5 aborted GETs")
        // Each request's log line is written once it ended, and read from the gateway's stderr by the test:
        // wait for the five, with the same deadline.
        func aborted() -> Int { gw.log.components(separatedBy: "GET /repo/big 200 0B").count - 1 }
        while aborted() < 5 && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let log = gw.log
        XCTAssertEqual(aborted(), 5, "aborted GETs not logged as such:\n\(log.suffix(3000))")
        XCTAssertTrue(log.contains("ClientAbort"), log)
        // And the object still reads back whole on a new connection.
        let again = try await signedRequest(port: gw.port, method: "GET", path: "/repo/big")
        XCTAssertTrue(again.body == data)
    }

    private func openDescriptors(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// Sends a signed GET, reads at least `after` bytes of the answer, then closes the connection.
    private func getThenHangUp(port: Int, path: String, after: Int) async throws -> Int {
        let headers = signedHeaders(port: port, method: "GET", path: path)
        return try await blocking {
            let fd = try connectLoopback(port: port)
            defer { close(fd) }
            var head = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
            for (k, v) in headers { head += "\(k): \(v)\r\n" }
            head += "\r\n"
            let bytes = Array(head.utf8)
            guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else { throw POSIXError(.EIO) }
            var got = 0
            var buf = [UInt8](repeating: 0, count: 65536)
            while got < after {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                got += n
            }
            // Reset rather than a graceful close: the gateway's next sendfile fails at once.
            var lingerOff = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lingerOff, socklen_t(MemoryLayout<linger>.size))
            return got
        }
    }
}
