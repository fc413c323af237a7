import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client

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
        let lines = headers.map { ($0.key, $0.value) } + signed
        let qs = query.canonical()
        let url = scheme + "://" + host + path + (qs.isEmpty ? "" : "?" + qs)
        let t = UpstreamTransfer(method: req.method, url: url, headers: lines, uploadLength: uploadLength)
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
