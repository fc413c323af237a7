import CCurl
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// One libcurl transfer driven from its own thread. Request and response bodies pass through bounded
/// queues (4 MiB each way), so no whole object is ever held in memory.
final class CurlTransfer: @unchecked Sendable {
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
    private(set) var curlError: String?

    let method: String
    let url: String
    let requestHeaders: [String]
    let uploadLength: Int?

    init(method: String, url: String, headers: [String], uploadLength: Int?) {
        self.method = method; self.url = url; self.requestHeaders = headers; self.uploadLength = uploadLength
    }

    func start() {
        let t = Thread { [self] in self.perform() }
        t.name = "gateway-curl"
        t.start()
    }

    private func perform() {
        guard let h = curl_easy_init() else {
            finish(error: "curl_easy_init failed")
            return
        }
        defer { curl_easy_cleanup(h) }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        for s in requestHeaders + ["Expect:", "Accept:"] { list = curl_slist_append(list, s) }
        defer { curl_slist_free_all(list) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        automate_curl_setopt_string(h, CURLOPT_URL, url)
        automate_curl_setopt_pointer(h, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list))
        automate_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
        automate_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT, 30)
        automate_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0)
        automate_curl_setopt_long(h, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        let headerFn: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { p, size, n, ud in
            let t = Unmanaged<CurlTransfer>.fromOpaque(ud!).takeUnretainedValue()
            let len = size * n
            t.onHeader(String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self))
            return len
        }
        let writeFn: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { p, size, n, ud in
            let t = Unmanaged<CurlTransfer>.fromOpaque(ud!).takeUnretainedValue()
            return t.onData(UnsafeRawBufferPointer(start: p, count: size * n)) ? size * n : 0
        }
        let readFn: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { p, size, n, ud in
            let t = Unmanaged<CurlTransfer>.fromOpaque(ud!).takeUnretainedValue()
            return t.onRead(UnsafeMutableRawBufferPointer(start: p, count: size * n))
        }
        automate_curl_setopt_pointer(h, CURLOPT_HEADERFUNCTION, unsafeBitCast(headerFn, to: UnsafeMutableRawPointer.self))
        automate_curl_setopt_pointer(h, CURLOPT_HEADERDATA, me)
        automate_curl_setopt_pointer(h, CURLOPT_WRITEFUNCTION, unsafeBitCast(writeFn, to: UnsafeMutableRawPointer.self))
        automate_curl_setopt_pointer(h, CURLOPT_WRITEDATA, me)
        if method == "HEAD" {
            automate_curl_setopt_long(h, CURLOPT_NOBODY, 1)
        } else if let len = uploadLength {
            automate_curl_setopt_long(h, CURLOPT_UPLOAD, 1)
            automate_curl_setopt_offset(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(len))
            automate_curl_setopt_pointer(h, CURLOPT_READFUNCTION, unsafeBitCast(readFn, to: UnsafeMutableRawPointer.self))
            automate_curl_setopt_pointer(h, CURLOPT_READDATA, me)
            automate_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
        } else {
            automate_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
        }
        let rc = curl_easy_perform(h)
        finish(error: rc == CURLE_OK ? nil : String(cString: curl_easy_strerror(rc)))
    }

    private func finish(error: String?) {
        cond.lock()
        finished = true
        curlError = error
        headDone = true
        let ws = [headWaiter, downWaiter, upWaiter]
        headWaiter = nil; downWaiter = nil; upWaiter = nil
        cond.broadcast()
        cond.unlock()
        ws.forEach { $0?.resume() }
    }

    // MARK: curl thread callbacks

    private func onHeader(_ line: String) {
        let l = line.trimmingCharacters(in: .whitespacesAndNewlines)
        cond.lock()
        var w: CheckedContinuation<Void, Never>?
        if l.hasPrefix("HTTP/") {
            let parts = l.split(separator: " ")
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = []
        } else if l.isEmpty {
            if status >= 200 { headDone = true; w = headWaiter; headWaiter = nil }
        } else if let c = l.firstIndex(of: ":") {
            headers.append((String(l[..<c]), l[l.index(after: c)...].trimmingCharacters(in: .whitespaces)))
        }
        cond.unlock()
        w?.resume()
    }

    private func onData(_ p: UnsafeRawBufferPointer) -> Bool {
        var buf = ByteBufferAllocator().buffer(capacity: p.count)
        buf.writeBytes(p)
        cond.lock()
        while downBytes > limit && !cancelled { cond.wait() }
        if cancelled { cond.unlock(); return false }
        downQueue.append(buf)
        downBytes += p.count
        let w = downWaiter
        downWaiter = nil
        cond.unlock()
        w?.resume()
        return true
    }

    private func onRead(_ out: UnsafeMutableRawBufferPointer) -> Int {
        cond.lock()
        while upQueue.isEmpty && !upEOF && !upAbort { cond.wait() }
        if upAbort { cond.unlock(); return Int(CURL_READFUNC_ABORT) }
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

    // MARK: async side

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

private let curlInit: Void = { curl_global_init(Int(CURL_GLOBAL_ALL)); return () }()

/// S3 mode: requests verified against the gateway key are re-signed with the real credentials and sent
/// to the upstream endpoint, into one bucket under a key prefix.
struct ProxyBackend: S3Backend {
    let upstream: UpstreamConfig
    /// The region clients sign for (CreateBucket on the upstream bucket answers as S3 does there).
    let region: String
    let logger: Logger
    let signer: SigV4Signer
    let scheme: String
    let hostPort: String   // as in the endpoint URL
    let basePath: String

    init(upstream: UpstreamConfig, region: String, logger: Logger) throws {
        _ = curlInit
        self.upstream = upstream
        self.region = region
        self.logger = logger
        self.signer = SigV4Signer(credentials: upstream.credentials, region: upstream.region)
        guard let u = URLComponents(string: upstream.endpoint), let s = u.scheme, let host = u.host else {
            throw CredentialsFileError(description: "invalid --upstream-endpoint \(upstream.endpoint)")
        }
        scheme = s
        hostPort = host + (u.port.map { ":\($0)" } ?? "")
        var bp = u.path
        while bp.hasSuffix("/") { bp.removeLast() }
        basePath = bp
    }

    var prefix: String { upstream.prefix }

    /// URL host and canonical path for an upstream key (nil key: the bucket).
    func target(key: String?) -> (host: String, path: String) {
        let k = key.map { URIEncoding.encode(prefix + $0, keepSlash: true) } ?? ""
        if upstream.pathStyle {
            return (hostPort, basePath + "/" + URIEncoding.encode(upstream.bucket, keepSlash: false) + (key == nil ? "" : "/" + k))
        }
        return (upstream.bucket + "." + hostPort, basePath + "/" + k)
    }

    static let forwardedRequestHeaders: Set<String> = [
        "content-type", "content-md5", "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
        "cache-control", "content-disposition", "content-language", "expires", "x-amz-metadata-directive", "x-amz-storage-class",
        "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match", "x-amz-copy-source-if-modified-since",
        "x-amz-copy-source-if-unmodified-since", "x-amz-copy-source-range", "x-amz-tagging", "x-amz-tagging-directive",
    ]
    static let droppedResponseHeaders: Set<String> = ["connection", "transfer-encoding", "keep-alive", "date", "server", "x-amz-request-id", "x-amz-id-2"]

    func handle(_ req: S3Request, body: RequestBody, log: RequestLog) async throws -> Response {
        guard let bucket = req.bucket else {
            guard req.method == "GET" else { throw S3Error.methodNotAllowed }
            return Reply.xml(xmlHeader + "<ListAllMyBucketsResult xmlns=\"\(s3NS)\"><Owner><ID>automate</ID><DisplayName>automate</DisplayName></Owner><Buckets><Bucket><Name>\(XML.escape(upstream.bucket))</Name><CreationDate>\(XML.date(Date(timeIntervalSince1970: 0)))</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>")
        }
        guard bucket == upstream.bucket else { throw S3Error.noSuchBucket }
        var query = QueryItems(items: req.query.items.filter { !$0.0.hasPrefix("X-Amz-") })
        var headers: [String: String] = [:]
        for (k, v) in req.headers where Self.forwardedRequestHeaders.contains(k) || k.hasPrefix("x-amz-meta-") {
            headers[k] = v
        }
        if let ce = req.headers["content-encoding"] {
            let rest = ce.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0 != "aws-chunked" && !$0.isEmpty }
            if !rest.isEmpty { headers["content-encoding"] = rest.joined(separator: ",") }
        }
        // Checksums sent as headers are forwarded; trailing ones were checked here.
        for (k, v) in req.headers where k.hasPrefix("x-amz-checksum-") && req.headers["x-amz-trailer"] == nil { headers[k] = v }
        var rewriteList = false
        var smallBody: [UInt8]? = nil

        if req.key == nil {
            switch req.method {
            case "GET":
                if query.has("location") {
                    let loc = upstream.region == "us-east-1" ? "" : XML.escape(upstream.region)
                    return Reply.xml(xmlHeader + "<LocationConstraint xmlns=\"\(s3NS)\">\(loc)</LocationConstraint>")
                }
                let allowed: Set<String> = ["list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token", "start-after", "encoding-type", "fetch-owner"]
                if let bad = query.items.first(where: { !allowed.contains($0.0) }) {
                    throw S3Error.notImplemented.with(message: "The '\(bad.0)' sub-resource is not implemented by this gateway.")
                }
                var items = query.items.filter { !["prefix", "marker", "start-after"].contains($0.0) }
                items.append(("prefix", prefix + (query["prefix"] ?? "")))
                if let m = query["marker"], !m.isEmpty { items.append(("marker", prefix + m)) }
                if let s = query["start-after"], !s.isEmpty { items.append(("start-after", prefix + s)) }
                query = QueryItems(items: items)
                rewriteList = true
            case "HEAD":
                break
            case "POST" where query.has("delete"):
                var data = [UInt8]()
                _ = try await FSBackend.receive(req, body: body) { p in
                    data.append(contentsOf: p)
                    if data.count > 2 << 20 { throw S3Error.malformedXML }
                }
                var text = String(decoding: data, as: UTF8.self)
                text = text.replacingOccurrences(of: "<Key>", with: "<Key>" + XML.escape(prefix))
                smallBody = Array(text.utf8)
                headers["content-md5"] = Digests.md5Base64(smallBody!)
                headers.removeValue(forKey: "x-amz-checksum-crc32"); headers.removeValue(forKey: "x-amz-checksum-crc32c")
                headers.removeValue(forKey: "x-amz-checksum-sha256"); headers.removeValue(forKey: "x-amz-checksum-sha1")
                rewriteList = true
            case "PUT":
                // The upstream bucket exists and is the caller's: answer CreateBucket as S3 does for a bucket
                // one already owns (200 in us-east-1, BucketAlreadyOwnedByYou elsewhere), so that "make sure
                // the bucket exists" works unchanged in S3 mode.
                for try await _ in body {}
                if region == "us-east-1" { return Reply.empty(headers: [("Location", "/" + bucket)]) }
                throw S3Error("BucketAlreadyOwnedByYou", 409, "The gateway's upstream bucket exists and is yours.")
            case "DELETE":
                throw S3Error("AccessDenied", 403, "Buckets cannot be deleted through the gateway in S3 mode.")
            default:
                throw S3Error.notImplemented
            }
        } else {
            if let src = req.headers["x-amz-copy-source"] {
                var s = src
                if let q = s.firstIndex(of: "?") { s = String(s[..<q]) }
                guard let decoded = URIEncoding.decode(Substring(s)) else { throw S3Error.invalidArgument("Invalid copy source encoding") }
                let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
                guard let slash = trimmed.firstIndex(of: "/"), String(trimmed[..<slash]) == upstream.bucket else { throw S3Error.noSuchBucket }
                let skey = String(trimmed[trimmed.index(after: slash)...])
                try FSStore.validateKey(skey)
                headers["x-amz-copy-source"] = "/" + upstream.bucket + "/" + URIEncoding.encode(prefix + skey, keepSlash: true)
            }
            if req.method == "POST" { rewriteList = true }
        }

        let (host, path) = target(key: req.key)
        headers["host"] = host
        let hasBody = (req.method == "PUT" || req.method == "POST")
        var uploadLength: Int? = nil
        if let b = smallBody {
            uploadLength = b.count
        } else if hasBody {
            if case .streamingSigned = req.payload, let l = req.headers["x-amz-decoded-content-length"].flatMap({ Int($0) }) { uploadLength = l }
            else if case .streamingUnsignedTrailer = req.payload, let l = req.headers["x-amz-decoded-content-length"].flatMap({ Int($0) }) { uploadLength = l }
            else { uploadLength = req.headers["content-length"].flatMap { Int($0) } ?? 0 }
        }
        if let l = uploadLength { headers["content-length"] = String(l) }
        let signed = signer.sign(method: req.method, canonicalURI: path, query: query, headers: headers, payloadHash: "UNSIGNED-PAYLOAD")
        var lines = headers.map { "\($0.key): \($0.value)" }
        lines += signed.map { "\($0.0): \($0.1)" }
        let qs = query.canonical()
        let url = scheme + "://" + host + path + (qs.isEmpty ? "" : "?" + qs)
        let t = CurlTransfer(method: req.method, url: url, headers: lines, uploadLength: uploadLength)
        t.start()

        if hasBody {
            if let b = smallBody {
                await t.push(ByteBuffer(bytes: b))
                t.endUpload(abort: false)
            } else {
                // The last piece is held back until every check on the body passed, so a bad body never
                // completes upstream.
                var held: ByteBuffer? = nil
                do {
                    let decoder = try PayloadDecoder(mode: req.payload, headers: req.headers)
                    for try await buf in body {
                        for piece in try decoder.feed(buf) where piece.readableBytes > 0 {
                            if let h = held { await t.push(h) }
                            held = piece
                        }
                    }
                    try decoder.finish()
                    if let h = held { await t.push(h) }
                    t.endUpload(abort: false)
                    log.bytes = decoder.decodedBytes
                } catch {
                    t.endUpload(abort: true)
                    t.cancel()
                    throw error
                }
            }
        }
        await t.waitHead()
        if t.status == 0 {
            logger.warning("upstream request failed: \(t.curlError ?? "no response")")
            throw S3Error("ServiceUnavailable", 503, "The upstream S3 endpoint could not be reached.")
        }
        var outHeaders: [(String, String)] = []
        for (k, v) in t.headers where !Self.droppedResponseHeaders.contains(k.lowercased()) { outHeaders.append((k, v)) }

        if rewriteList || t.status >= 300 || req.method == "HEAD" {
            let data = await t.collect()
            if req.method == "HEAD" {
                return Response(status: .init(code: t.status), headers: Reply.fields(outHeaders), body: ResponseBody())
            }
            var text = String(decoding: data, as: UTF8.self)
            if rewriteList && t.status < 300 { text = stripPrefix(text, urlEncoded: req.query["encoding-type"] == "url") }
            if t.status >= 300 { text = text.replacingOccurrences(of: XML.escape(prefix), with: "") }
            outHeaders.removeAll { $0.0.lowercased() == "content-length" }
            let b = ByteBuffer(string: text)
            return Response(status: .init(code: t.status), headers: Reply.fields(outHeaders), body: ResponseBody(byteBuffer: b))
        }
        let status = t.status
        log.deferred = true
        let length = t.headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) }
        let bodyOut = ResponseBody(contentLength: length) { writer in
            var sent = 0
            do {
                while let b = await t.next() {
                    sent += b.readableBytes
                    try await writer.write(b)
                }
                if let e = t.curlError { throw S3Error("InternalError", 500, "upstream transfer failed: \(e)") }
                try await writer.finish(nil)
                log.finish(status: status, bytes: sent)
            } catch {
                t.cancel()
                log.finish(status: status, bytes: sent, error: S3Error("ClientAbort", 499, "\(error)"))
                throw error
            }
        }
        return Response(status: .init(code: status), headers: Reply.fields(outHeaders), body: bodyOut)
    }

    /// Removes the upstream key prefix from keys and prefixes in a listing (or result) document.
    func stripPrefix(_ text: String, urlEncoded: Bool) -> String {
        guard !prefix.isEmpty else { return text }
        var out = text
        let forms = Set([XML.escape(prefix), XML.escape(URIEncoding.encode(prefix, keepSlash: true))])
        for tag in ["Key", "Prefix", "Marker", "NextMarker", "StartAfter"] {
            for f in forms { out = out.replacingOccurrences(of: "<\(tag)>\(f)", with: "<\(tag)>") }
        }
        return out
    }
}
