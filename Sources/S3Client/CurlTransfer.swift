import CCurl
import Foundation
import Operations

/// One HTTP exchange through libcurl, run synchronously on the calling thread (callers own that thread:
/// `runBlocking`, the BlockingPool). Request bodies come from memory or from a pull callback; response bodies go to
/// memory or to a push callback (streaming), so no transfer needs the whole object in memory. This is the
/// stack's one libcurl wrapper: the S3 client and the gateway's re-signing proxy both go through
/// ``performHTTP(_:sink:onHead:)``. Run on a ``BlockingPool`` thread (or one working for a
/// ``BlockingJob``), a transfer stops within a second of that job's cancellation.
public struct HTTPRequest: Sendable {
    public enum Body: Sendable {
        case none
        case bytes([UInt8])
        /// Pull callback: fill the buffer, return bytes written, 0 at the end. Called on the transfer thread.
        case stream(length: Int64?, @Sendable (UnsafeMutableRawBufferPointer) throws -> Int)
    }

    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: Body
    /// `(region)` for `CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3"`, with `user:secret`.
    public var sigV4: (provider: String, userpwd: String)?
    public var timeoutSeconds: Int
    /// Abort when slower than 1 byte/s for this long (a stalled peer); 0 disables.
    public var lowSpeedSeconds: Int
    /// How long connecting may take.
    public var connectTimeoutSeconds: Int
    /// The CA bundle that must vouch for an https server (`CURLOPT_CAINFO`); nil: the system's.
    public var caFile: String?

    public init(
        method: String, url: String, headers: [(String, String)] = [], body: Body = .none,
        sigV4: (provider: String, userpwd: String)? = nil, timeoutSeconds: Int = 0, lowSpeedSeconds: Int = 120,
        connectTimeoutSeconds: Int = 10
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.sigV4 = sigV4
        self.timeoutSeconds = timeoutSeconds
        self.lowSpeedSeconds = lowSpeedSeconds
        self.connectTimeoutSeconds = connectTimeoutSeconds
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    /// The body when no sink was given (or, with a sink, the body of a non-2xx answer, for its error).
    public var body: [UInt8]

    public var bodyString: String { String(decoding: body, as: UTF8.self) }
}

/// A transport failure (connect, timeout, a callback's error): not an HTTP status.
public struct HTTPTransportError: Error, CustomStringConvertible, Sendable {
    public var code: Int
    public var message: String
    public var description: String { "HTTP transport error (curl \(code)): \(message)" }
}

private final class TransferContext {
    var request: HTTPRequest
    var sink: ((UnsafeRawBufferPointer) throws -> Void)?
    var onHead: ((Int, [(String, String)]) -> Void)?
    var responseBody: [UInt8] = []
    /// The final response's header lines as sent (order and case kept).
    var headerLines: [(String, String)] = []
    var status: Int = 0
    var callbackError: Error?
    /// The job this transfer works for: it is aborted once the job is cancelled.
    var job: BlockingJob?
    var pending: [UInt8] = []
    var pendingOffset = 0

    init(request: HTTPRequest, sink: ((UnsafeRawBufferPointer) throws -> Void)?, onHead: ((Int, [(String, String)]) -> Void)?) {
        self.request = request
        self.sink = sink
        self.onHead = onHead
        if case .bytes(let b) = request.body { pending = b }
    }
}

private let curlGlobalInit: Void = {
    curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}()

private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    ptr, size, count, userdata in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    let n = size * count
    guard n > 0, let ptr else { return n }
    let buffer = UnsafeRawBufferPointer(start: ptr, count: n)
    // Non-2xx answers are collected whole (they are small error documents), never sent to the sink.
    if let sink = ctx.sink, (200..<300).contains(ctx.currentStatus) {
        do { try sink(buffer) } catch {
            ctx.callbackError = error
            return 0  // makes curl fail the transfer with CURLE_WRITE_ERROR
        }
    } else {
        if ctx.responseBody.count < 64 << 20 { ctx.responseBody.append(contentsOf: buffer) }
    }
    return n
}

extension TransferContext {
    var currentStatus: Int { status }
}

private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    ptr, size, count, userdata in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    let n = size * count
    guard let ptr else { return n }
    let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    if line.hasPrefix("HTTP/") {
        // A new response (after 100-continue or a redirect): reset.
        let parts = line.split(separator: " ")
        if parts.count >= 2, let code = Int(parts[1]) { ctx.status = code }
        ctx.headerLines = []
    } else if line.isEmpty {
        // The end of a header block: the final response's (not a 1xx) is announced once.
        if ctx.status >= 200, let onHead = ctx.onHead {
            ctx.onHead = nil
            onHead(ctx.status, ctx.headerLines)
        }
    } else if let colon = line.firstIndex(of: ":") {
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        ctx.headerLines.append((String(line[..<colon]), value))
    }
    return n
}

private let readCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    ptr, size, count, userdata in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    let capacity = size * count
    guard let ptr, capacity > 0 else { return 0 }
    switch ctx.request.body {
    case .none:
        return 0
    case .bytes:
        let remaining = ctx.pending.count - ctx.pendingOffset
        let n = min(remaining, capacity)
        if n > 0 {
            ctx.pending.withUnsafeBytes { src in
                UnsafeMutableRawPointer(ptr).copyMemory(from: src.baseAddress! + ctx.pendingOffset, byteCount: n)
            }
            ctx.pendingOffset += n
        }
        return n
    case .stream(_, let pull):
        do {
            return try pull(UnsafeMutableRawBufferPointer(start: ptr, count: capacity))
        } catch {
            ctx.callbackError = error
            return Int(CURL_READFUNC_ABORT)
        }
    }
}

/// Called by libcurl while a transfer runs (at least once a second, even when nothing moves): a non-zero
/// answer aborts it.
private let xferinfoCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = {
    userdata, _, _, _, _ in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    return ctx.job?.isCancelled == true ? 1 : 0
}

/// Performs `request` on the calling thread. With `sink`, a 2xx body is pushed to it chunk by chunk (a
/// sink that throws aborts the transfer, and its error is thrown); any other body is collected into the
/// response. `onHead` gets the final status and header lines (as sent) once they are in, before any body.
public func performHTTP(
    _ request: HTTPRequest, sink: ((UnsafeRawBufferPointer) throws -> Void)? = nil,
    onHead: ((Int, [(String, String)]) -> Void)? = nil
) throws -> HTTPResponse {
    _ = curlGlobalInit
    guard let curl = curl_easy_init() else {
        throw HTTPTransportError(code: -1, message: "curl_easy_init failed")
    }
    defer { curl_easy_cleanup(curl) }
    let ctx = TransferContext(request: request, sink: sink, onHead: onHead)
    let unmanaged = Unmanaged.passRetained(ctx)
    defer { unmanaged.release() }
    let opaque = unmanaged.toOpaque()

    var headerList: UnsafeMutablePointer<curl_slist>? = nil
    defer { curl_slist_free_all(headerList) }
    for (name, value) in request.headers {
        headerList = curl_slist_append(headerList, "\(name): \(value)")
    }

    automate_curl_setopt_string(curl, CURLOPT_URL, request.url)
    automate_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1)
    automate_curl_setopt_pointer(curl, CURLOPT_WRITEFUNCTION, unsafeBitCast(writeCallback, to: UnsafeMutableRawPointer.self))
    automate_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, opaque)
    automate_curl_setopt_pointer(curl, CURLOPT_HEADERFUNCTION, unsafeBitCast(headerCallback, to: UnsafeMutableRawPointer.self))
    automate_curl_setopt_pointer(curl, CURLOPT_HEADERDATA, opaque)
    automate_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT, request.connectTimeoutSeconds)
    automate_curl_setopt_long(curl, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
    if request.timeoutSeconds > 0 { automate_curl_setopt_long(curl, CURLOPT_TIMEOUT, request.timeoutSeconds) }
    if let caFile = request.caFile { automate_curl_setopt_string(curl, CURLOPT_CAINFO, caFile) }
    if request.lowSpeedSeconds > 0 {
        automate_curl_setopt_long(curl, CURLOPT_LOW_SPEED_LIMIT, 1)
        automate_curl_setopt_long(curl, CURLOPT_LOW_SPEED_TIME, request.lowSpeedSeconds)
    }
    if let job = BlockingJob.current {
        ctx.job = job
        automate_curl_setopt_long(curl, CURLOPT_NOPROGRESS, 0)
        automate_curl_setopt_pointer(curl, CURLOPT_XFERINFOFUNCTION, unsafeBitCast(xferinfoCallback, to: UnsafeMutableRawPointer.self))
        automate_curl_setopt_pointer(curl, CURLOPT_XFERINFODATA, opaque)
    }
    if let sig = request.sigV4 {
        automate_curl_setopt_string(curl, CURLOPT_AWS_SIGV4, sig.provider)
        automate_curl_setopt_string(curl, CURLOPT_USERPWD, sig.userpwd)
    }

    switch request.method {
    case "GET":
        break
    case "HEAD":
        automate_curl_setopt_long(curl, CURLOPT_NOBODY, 1)
    case "PUT":
        automate_curl_setopt_long(curl, CURLOPT_UPLOAD, 1)
    default:
        automate_curl_setopt_string(curl, CURLOPT_CUSTOMREQUEST, request.method)
    }
    switch request.body {
    case .none:
        if request.method == "PUT" { automate_curl_setopt_offset(curl, CURLOPT_INFILESIZE_LARGE, 0) }
        if request.method == "POST" {
            automate_curl_setopt_long(curl, CURLOPT_POST, 1)
            automate_curl_setopt_long(curl, CURLOPT_POSTFIELDSIZE, 0)
            automate_curl_setopt_string(curl, CURLOPT_POSTFIELDS, "")
        }
    case .bytes(let bytes):
        if request.method == "POST" {
            automate_curl_setopt_long(curl, CURLOPT_POST, 1)
            automate_curl_setopt_offset(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count))
        } else {
            automate_curl_setopt_long(curl, CURLOPT_UPLOAD, 1)
            automate_curl_setopt_offset(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(bytes.count))
        }
        automate_curl_setopt_pointer(curl, CURLOPT_READFUNCTION, unsafeBitCast(readCallback, to: UnsafeMutableRawPointer.self))
        automate_curl_setopt_pointer(curl, CURLOPT_READDATA, opaque)
    case .stream(let length, _):
        if request.method == "POST" {
            automate_curl_setopt_long(curl, CURLOPT_POST, 1)
            if let length { automate_curl_setopt_offset(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(length)) }
        } else {
            automate_curl_setopt_long(curl, CURLOPT_UPLOAD, 1)
            if let length { automate_curl_setopt_offset(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(length)) }
        }
        automate_curl_setopt_pointer(curl, CURLOPT_READFUNCTION, unsafeBitCast(readCallback, to: UnsafeMutableRawPointer.self))
        automate_curl_setopt_pointer(curl, CURLOPT_READDATA, opaque)
    }
    // No "Expect: 100-continue" round trip, no "Accept: */*", and no form content type that libcurl would
    // add to a POST (an upload's object would keep it as its Content-Type).
    headerList = curl_slist_append(headerList, "Expect:")
    headerList = curl_slist_append(headerList, "Accept:")
    if request.method == "POST", !request.headers.contains(where: { $0.0.lowercased() == "content-type" }) {
        headerList = curl_slist_append(headerList, "Content-Type:")
    }
    automate_curl_setopt_pointer(curl, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headerList))

    let code = curl_easy_perform(curl)
    if let error = ctx.callbackError { throw error }
    if code == CURLE_ABORTED_BY_CALLBACK, ctx.job?.isCancelled == true { throw CancellationError() }
    if code != CURLE_OK {
        let message = String(cString: curl_easy_strerror(code))
        throw HTTPTransportError(code: Int(code.rawValue), message: "\(request.method) \(request.url): \(message)")
    }
    var status: Int = 0
    automate_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
    let headers = Dictionary(ctx.headerLines.map { ($0.0.lowercased(), $0.1) }, uniquingKeysWith: { $1 })
    return HTTPResponse(status: status, headers: headers, body: ctx.responseBody)
}


/// Percent-encodes for a URL path segment or query value (RFC 3986 unreserved kept; `/` kept when asked).
public func uriEncode(_ s: String, keepSlash: Bool = false) -> String {
    var out = ""
    for byte in s.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "~"):
            out.append(Character(UnicodeScalar(byte)))
        case UInt8(ascii: "/") where keepSlash:
            out.append("/")
        default:
            out += String(format: "%%%02X", byte)
        }
    }
    return out
}
