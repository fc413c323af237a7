import Foundation
import NIOCore
import S3Client

/// One request to the upstream S3 endpoint (S3 mode), run by the stack's libcurl wrapper
/// (``S3Client/performHTTP(_:sink:onHead:)``) on a thread of its own, with the request and response bodies
/// passing between that thread and the request's task through bounded queues (4 MiB each way): no whole
/// object is ever held in memory, and a slow side slows the other down.
final class UpstreamTransfer: @unchecked Sendable {
    // Everything below `cond` is read and written with `cond` held.
    private let cond = NSCondition()
    private let limit = 4 << 20
    // request body
    private var upQueue: [ByteBuffer] = []
    private var upBytes = 0
    private var upEOF = false
    private var upAbort = false
    private var upWaiter: CheckedContinuation<Void, Never>?
    // response
    private(set) var status = 0
    private(set) var headers: [(String, String)] = []
    private var headDone = false
    private var headWaiter: CheckedContinuation<Void, Never>?
    private var downQueue: [ByteBuffer] = []
    private var downBytes = 0
    private var downWaiter: CheckedContinuation<Void, Never>?
    private var finished = false
    private var cancelled = false
    /// Why the transfer failed (no answer, or cut short); nil while it runs and when it succeeded.
    private(set) var curlError: String?

    // What to send, fixed at init.
    private let method: String
    private let url: String
    private let requestHeaders: [(String, String)]
    private let uploadLength: Int?

    /// A transfer of `method` to `url` with `headers` (already signed); `uploadLength` bytes of request body
    /// will be pushed (nil: no body).
    init(method: String, url: String, headers: [(String, String)], uploadLength: Int?) {
        self.method = method
        self.url = url
        self.requestHeaders = headers
        self.uploadLength = uploadLength
    }

    func start() {
        let t = Thread { [self] in self.perform() }
        t.name = "gateway-upstream"
        t.stackSize = 1 << 20
        t.start()
    }

    private func perform() {
        var body = HTTPRequest.Body.none
        if method != "HEAD", let uploadLength { body = .stream(length: Int64(uploadLength)) { [self] out in try pull(into: out) } }
        // No overall or low-speed timeout: a client reading a large object slowly stalls the transfer on purpose.
        let request = HTTPRequest(method: method, url: url, headers: requestHeaders, body: body, timeoutSeconds: 0, lowSpeedSeconds: 0,
                                  connectTimeoutSeconds: 30)
        do {
            let response = try performHTTP(
                request, sink: { [self] chunk in try self.push(response: chunk) },
                onHead: { [self] status, headers in self.head(status: status, headers: headers) })
            // Bodies of non-2xx answers (S3's small error documents) are collected by the wrapper.
            if !response.body.isEmpty, !(200..<300).contains(response.status) {
                var buf = ByteBufferAllocator().buffer(capacity: response.body.count)
                buf.writeBytes(response.body)
                cond.withLock { downQueue.append(buf); downBytes += buf.readableBytes }
            }
            finish(status: response.status, error: nil)
        } catch {
            finish(status: nil, error: "\(error)")
        }
    }

    private func finish(status: Int?, error: String?) {
        cond.lock()
        finished = true
        curlError = error
        if let status, self.status == 0 { self.status = status }
        headDone = true
        let ws = [headWaiter, downWaiter, upWaiter]
        headWaiter = nil; downWaiter = nil; upWaiter = nil
        cond.broadcast()
        cond.unlock()
        ws.forEach { $0?.resume() }
    }

    // MARK: transfer thread

    private func head(status: Int, headers: [(String, String)]) {
        cond.lock()
        self.status = status
        self.headers = headers
        headDone = true
        let w = headWaiter
        headWaiter = nil
        cond.unlock()
        w?.resume()
    }

    /// Queues a piece of a 2xx body; waits while the queue is full; throws once the transfer is cancelled.
    private func push(response p: UnsafeRawBufferPointer) throws {
        guard p.count > 0 else { return }
        var buf = ByteBufferAllocator().buffer(capacity: p.count)
        buf.writeBytes(p)
        cond.lock()
        while downBytes > limit && !cancelled { cond.wait() }
        if cancelled { cond.unlock(); throw CancellationError() }
        downQueue.append(buf)
        downBytes += p.count
        let w = downWaiter
        downWaiter = nil
        cond.unlock()
        w?.resume()
    }

    /// Fills `out` with request body bytes; waits for them; 0 at the end; throws when the body was aborted.
    private func pull(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        cond.lock()
        while upQueue.isEmpty && !upEOF && !upAbort { cond.wait() }
        if upAbort { cond.unlock(); throw CancellationError() }
        if upQueue.isEmpty { cond.unlock(); return 0 }
        var first = upQueue[0]
        let n = min(out.count, first.readableBytes)
        first.withUnsafeReadableBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        first.moveReaderIndex(forwardBy: n)
        if first.readableBytes == 0 { upQueue.removeFirst() } else { upQueue[0] = first }
        upBytes -= n
        let w = upBytes <= limit ? upWaiter : nil
        if w != nil { upWaiter = nil }
        cond.unlock()
        w?.resume()
        return n
    }

    // MARK: request task

    /// Queues request body bytes; waits while the queue is full. Dropped once the transfer ended.
    func push(_ buf: ByteBuffer) async {
        while true {
            let ready: Bool = cond.withLock {
                if finished { return true }
                if upBytes <= limit {
                    upQueue.append(buf); upBytes += buf.readableBytes
                    cond.broadcast()
                    return true
                }
                return false
            }
            if ready { return }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                cond.lock()
                if finished || upBytes <= limit { cond.unlock(); c.resume(); return }
                upWaiter = c
                cond.unlock()
            }
        }
    }

    /// Ends the request body: complete, or aborted (the upstream never sees a complete request).
    func endUpload(abort: Bool) {
        cond.withLock {
            if abort { upAbort = true } else { upEOF = true }
            cond.broadcast()
        }
    }

    /// Waits for the response status and headers (or the end of a failed transfer).
    func waitHead() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            cond.lock()
            if headDone { cond.unlock(); c.resume(); return }
            headWaiter = c
            cond.unlock()
        }
    }

    /// Next response body piece; nil at the end.
    func next() async -> ByteBuffer? {
        while true {
            let r: (ByteBuffer?, Bool) = cond.withLock {
                if !downQueue.isEmpty {
                    let b = downQueue.removeFirst()
                    downBytes -= b.readableBytes
                    cond.broadcast()
                    return (b, true)
                }
                return (nil, finished)
            }
            if r.1 { return r.0 }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                cond.lock()
                if !downQueue.isEmpty || finished { cond.unlock(); c.resume(); return }
                downWaiter = c
                cond.unlock()
            }
        }
    }

    /// Stops the transfer: its thread's next callback aborts it.
    func cancel() {
        cond.withLock { cancelled = true; upAbort = true; cond.broadcast() }
    }

    /// Reads the whole (small) response body.
    func collect(max: Int = 16 << 20) async -> [UInt8] {
        var out = [UInt8]()
        while let b = await next() {
            out += b.readableBytesView
            if out.count > max { cancel(); break }
        }
        return out
    }
}
