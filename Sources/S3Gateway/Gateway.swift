import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// One S3 request after routing: bucket, key, query and headers, authenticated.
struct S3Request: Sendable {
    var method: String
    var rawPath: String
    var bucket: String?
    var key: String?
    var query: QueryItems
    var headers: [String: String]
    var payload: PayloadMode = .unsigned
    var requestId: String
    /// Sends a GET's body from its file (nil: not on this connection, or a test's request).
    var fileRegions: FileRegionSender? = nil
}

/// Builds HTTP responses.
struct Reply {
    static func fields(_ pairs: [(String, String)]) -> HTTPFields {
        var f = HTTPFields()
        for (k, v) in pairs { if let n = HTTPField.Name(k) { f.append(HTTPField(name: n, value: v)) } }
        return f
    }

    static func xml(_ body: String, status: Int = 200, headers: [(String, String)] = []) -> Response {
        let b = ByteBuffer(string: body)
        return Response(status: .init(code: status), headers: fields([("Content-Type", "application/xml")] + headers), body: ResponseBody(byteBuffer: b))
    }

    static func empty(status: Int = 200, headers: [(String, String)] = []) -> Response {
        Response(status: .init(code: status), headers: fields(headers + [("Content-Length", "0")]), body: ResponseBody())
    }

    static func error(_ e: S3Error, requestId: String, resource: String, head: Bool) -> Response {
        var e = e
        e.resource = resource
        let body = e.xml(requestId: requestId)
        if head {
            return Response(status: .init(code: e.status), headers: fields([("x-amz-request-id", requestId), ("Content-Length", "0")]), body: ResponseBody())
        }
        return xml(body, status: e.status, headers: [("x-amz-request-id", requestId)])
    }
}

let xmlHeader = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
let s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

/// What serves the authenticated S3 operations: the filesystem store or the upstream proxy.
protocol S3Backend: Sendable {
    func handle(_ req: S3Request, body: RequestBody, log: RequestLog) async throws -> Response
}

/// Collects what the one log line per request says.
final class RequestLog: @unchecked Sendable {
    let logger: Logger
    let method: String
    var target: String
    let start = DispatchTime.now().uptimeNanoseconds
    var bytes = 0
    /// Set by a backend that streams the body and logs when it is sent.
    var deferred = false
    private var done = false
    private let lock = NSLock()

    init(logger: Logger, method: String, target: String) {
        self.logger = logger; self.method = method; self.target = target
    }

    func finish(status: Int, bytes: Int? = nil, error: S3Error? = nil) {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        let b = bytes ?? self.bytes
        var line = "\(method) \(target) \(status) \(b)B \(String(format: "%.1f", ms))ms"
        if let error { line += " \(error.code): \(error.message)" }
        logger.info("\(line)")
    }
}

/// The HTTP responder: health check, routing, SigV4 verification, S3 error bodies, request logging.
public struct GatewayResponder: HTTPResponder {
    public typealias Context = GatewayRequestContext
    let verifier: SigV4Verifier
    let backend: any S3Backend
    let logger: Logger

    init(verifier: SigV4Verifier, backend: any S3Backend, logger: Logger) {
        self.verifier = verifier
        self.backend = backend
        self.logger = logger
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let target = request.head.path ?? "/"
        let method = request.method.rawValue
        let requestId = String(UInt64.random(in: 0...UInt64.max), radix: 16, uppercase: true)
        let qIndex = target.firstIndex(of: "?")
        let rawPath = String(qIndex.map { target[..<$0] } ?? target[...])
        let rawQuery = qIndex.map { target[target.index(after: $0)...] }
        let isHead = request.method == .head

        if rawPath == "/healthz" && (request.method == .get || isHead) && rawQuery == nil {
            return Response(status: .ok, headers: Reply.fields([("Content-Type", "text/plain")]), body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
        }

        var headers: [String: String] = [:]
        for f in request.headers {
            let n = f.name.canonicalName
            if let v = headers[n] { headers[n] = v + "," + f.value } else { headers[n] = f.value }
        }
        if let a = request.head.authority { headers["host"] = a }

        let log = RequestLog(logger: logger, method: method, target: rawPath)
        var req = S3Request(method: method, rawPath: rawPath, query: QueryItems(rawQuery), headers: headers, requestId: requestId,
                            fileRegions: FileRegionSender(channel: context.channel))
        do {
            // Path-style addressing: /bucket/key
            guard let path = URIEncoding.decode(Substring(rawPath)) else {
                // Bad escapes or bytes that are not UTF-8: S3's answer.
                throw S3Error("InvalidURI", 400, "Couldn't parse the specified URI.")
            }
            log.target = path
            if path != "/" {
                guard path.hasPrefix("/") else { throw S3Error.invalidKey }
                let rest = path.dropFirst()
                if let slash = rest.firstIndex(of: "/") {
                    req.bucket = String(rest[..<slash])
                    let k = String(rest[rest.index(after: slash)...])
                    if !k.isEmpty { req.key = k }
                } else {
                    req.bucket = String(rest)
                }
            }
            do {
                req.payload = try verifier.verify(method: method, rawPath: rawPath, query: req.query, headers: headers)
            } catch let e as S3Error {
                // Authentication failures never reach the backend; log why, without secrets.
                logger.warning("auth rejected: \(method) \(path) \(e.code): \(e.message)")
                throw e
            }
            if let key = req.key {
                // Keys that would escape the bucket folder are refused in every mode.
                try FSStore.validateKey(key)
            }
            let resp = try await backend.handle(req, body: request.body, log: log)
            if !log.deferred { log.finish(status: resp.status.code) }
            var r = resp
            r.headers[HTTPField.Name("x-amz-request-id")!] = requestId
            return r
        } catch let e as S3Error {
            log.finish(status: e.status, error: e)
            return Reply.error(e, requestId: requestId, resource: log.target, head: isHead)
        } catch {
            let e = S3Error("InternalError", 500, "\(error)")
            log.finish(status: 500, error: e)
            return Reply.error(e, requestId: requestId, resource: log.target, head: isHead)
        }
    }
}
