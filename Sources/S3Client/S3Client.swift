import Foundation
import Operations

public struct S3Credentials: Sendable {
    public var accessKeyID: String
    public var secretAccessKey: String

    public init(accessKeyID: String, secretAccessKey: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
    }

    /// Reads two lines (access key id, secret: the gateway's format) or `key = value` lines (`access_key_id`/`aws_access_key_id`, `secret_access_key`/
    /// `aws_secret_access_key`; `#` comments, an INI `[section]` header is ignored) from `path`.
    public static func load(path: String) throws -> S3Credentials {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var values: [String: String] = [:]
        let plain = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        // The gateway's format: two lines, access key id then secret.
        if plain.count == 2, !plain[0].contains("="), !plain[1].contains("=") {
            return S3Credentials(accessKeyID: plain[0], secretAccessKey: plain[1])
        }
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix("[") { continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            values[key] = value
        }
        guard let id = values["access_key_id"] ?? values["aws_access_key_id"],
            let secret = values["secret_access_key"] ?? values["aws_secret_access_key"]
        else {
            throw S3Error(status: 0, code: "InvalidCredentialsFile", message: "\(path) has no access_key_id/secret_access_key", operation: "load credentials")
        }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret)
    }
}

public struct S3ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var etag: String
}

/// An S3 client over libcurl: path-style URLs (`<endpoint>/<bucket>/<key>`), SigV4 signed by libcurl
/// (`CURLOPT_AWS_SIGV4`). Streamed bodies are sent with `x-amz-content-sha256: UNSIGNED-PAYLOAD`; every
/// transfer runs on a thread of its own. The blocking (`…Sync`) variants are for callers already on their
/// own thread (the sidecars' pipelines); the async ones hop to a fresh thread.
public struct S3Client: Sendable {
    public var endpoint: String
    public var region: String
    public var credentials: S3Credentials?

    public init(endpoint: String, region: String = "us-east-1", credentials: S3Credentials?) {
        var e = endpoint
        while e.hasSuffix("/") { e.removeLast() }
        self.endpoint = e
        self.region = region
        self.credentials = credentials
    }

    // MARK: URLs and requests

    public func url(bucket: String, key: String? = nil, query: [(String, String)] = []) -> String {
        var u = endpoint + "/" + uriEncode(bucket)
        if let key { u += "/" + uriEncode(key, keepSlash: true) }
        if !query.isEmpty {
            // Sorted: libcurl signs the query as given, and SigV4 wants it canonical (sorted).
            u += "?" + query.sorted { $0.0 < $1.0 }.map { v in v.1.isEmpty && v.0 == "uploads" ? "uploads=" : "\(uriEncode(v.0))=\(uriEncode(v.1))" }
                .joined(separator: "&")
        }
        return u
    }

    func request(_ method: String, _ url: String, headers: [(String, String)] = [], body: HTTPRequest.Body = .none) -> HTTPRequest {
        var headers = headers
        // Every body is sent unsigned: curl 7.88 would otherwise sign the hash of POSTFIELDS only (empty for
        // bodies given through a read callback), which a verifying server rejects.
        headers.append(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
        return HTTPRequest(
            method: method, url: url, headers: headers, body: body,
            sigV4: credentials.map { ("aws:amz:\(region):s3", "\($0.accessKeyID):\($0.secretAccessKey)") })
    }

    func check(_ response: HTTPResponse, _ operation: String, allow: Set<Int> = []) throws {
        if (200..<300).contains(response.status) || allow.contains(response.status) { return }
        throw Self.error(from: response, operation: operation)
    }

    static func error(from response: HTTPResponse, operation: String) -> S3Error {
        S3Error.parse(status: response.status, body: response.bodyString, operation: operation)
    }

    // MARK: buckets

    /// Creates `bucket`; an existing bucket that is ours is fine. Returns false when it already existed.
    @discardableResult
    public func createBucketSync(_ bucket: String) throws -> Bool {
        let r = try performHTTP(request("PUT", url(bucket: bucket), body: .bytes([])))
        if r.status == 409 {
            let e = Self.error(from: r, operation: "CreateBucket \(bucket)")
            if e.code == "BucketAlreadyOwnedByYou" || e.code == "BucketAlreadyExists" { return false }
            throw e
        }
        try check(r, "CreateBucket \(bucket)")
        return true
    }

    public func deleteBucketSync(_ bucket: String) throws {
        try check(try performHTTP(request("DELETE", url(bucket: bucket))), "DeleteBucket \(bucket)")
    }

    // MARK: objects

    public func putObjectSync(bucket: String, key: String, bytes: [UInt8], contentType: String = "application/octet-stream") throws {
        let r = try performHTTP(request("PUT", url(bucket: bucket, key: key), headers: [("Content-Type", contentType)], body: .bytes(bytes)))
        try check(r, "PutObject \(key)")
    }

    /// PutObject from a pull callback (see `HTTPRequest.Body.stream`); `length` is required by S3.
    public func putObjectSync(
        bucket: String, key: String, length: Int64, from pull: @escaping @Sendable (UnsafeMutableRawBufferPointer) throws -> Int
    ) throws {
        let r = try performHTTP(request("PUT", url(bucket: bucket, key: key), body: .stream(length: length, pull)))
        try check(r, "PutObject \(key)")
    }

    public func getObjectSync(bucket: String, key: String) throws -> [UInt8] {
        let r = try performHTTP(request("GET", url(bucket: bucket, key: key)))
        try check(r, "GetObject \(key)")
        return r.body
    }

    /// Bytes `range` of the object (HTTP `Range: bytes=a-b`). Shorter than the range when the object ends
    /// first; empty when it ends before the range starts. A server that ignores ranges (200 with the whole
    /// object) is sliced here.
    public func getObjectRangeSync(bucket: String, key: String, range: Range<Int>) throws -> [UInt8] {
        guard !range.isEmpty else { return [] }
        let r = try performHTTP(request("GET", url(bucket: bucket, key: key), headers: [("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")]))
        if r.status == 416 { return [] }
        try check(r, "GetObject \(key) bytes \(range.lowerBound)-\(range.upperBound - 1)")
        if r.status == 206 { return r.body }
        guard range.lowerBound < r.body.count else { return [] }
        return Array(r.body[range.lowerBound..<min(range.upperBound, r.body.count)])
    }

    /// Streams the object into `sink`, chunk by chunk, on the calling thread. Returns the byte count.
    @discardableResult
    public func getObjectSync(bucket: String, key: String, into sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        var total: Int64 = 0
        let r = try performHTTP(request("GET", url(bucket: bucket, key: key))) { chunk in
            total += Int64(chunk.count)
            try sink(chunk)
        }
        try check(r, "GetObject \(key)")
        return total
    }

    /// The object's size and ETag, or nil when there is none.
    public func headObjectSync(bucket: String, key: String) throws -> S3ObjectInfo? {
        let r = try performHTTP(request("HEAD", url(bucket: bucket, key: key)))
        if r.status == 404 { return nil }
        try check(r, "HeadObject \(key)")
        return S3ObjectInfo(key: key, size: Int64(r.headers["content-length"] ?? "") ?? 0, etag: r.headers["etag"] ?? "")
    }

    public func deleteObjectSync(bucket: String, key: String) throws {
        try check(try performHTTP(request("DELETE", url(bucket: bucket, key: key))), "DeleteObject \(key)", allow: [404])
    }

    /// Every object under `prefix` (all pages of ListObjectsV2).
    public func listObjectsSync(bucket: String, prefix: String = "") throws -> [S3ObjectInfo] {
        var result: [S3ObjectInfo] = []
        var token: String? = nil
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let r = try performHTTP(request("GET", url(bucket: bucket, query: query)))
            try check(r, "ListObjectsV2 \(prefix)")
            let body = Substring(r.bodyString)
            for contents in XML.elements("Contents", in: body) {
                guard let key = XML.first("Key", in: contents) else { continue }
                result.append(S3ObjectInfo(
                    key: key, size: Int64(XML.first("Size", in: contents) ?? "") ?? 0, etag: XML.first("ETag", in: contents) ?? ""))
            }
            token = XML.first("IsTruncated", in: body) == "true" ? XML.first("NextContinuationToken", in: body) : nil
        } while token != nil
        return result
    }

    /// Deletes every object under `prefix`; returns how many.
    @discardableResult
    public func deletePrefixSync(bucket: String, prefix: String) throws -> Int {
        let objects = try listObjectsSync(bucket: bucket, prefix: prefix)
        for o in objects { try deleteObjectSync(bucket: bucket, key: o.key) }
        return objects.count
    }

    // MARK: multipart

    public func createMultipartUploadSync(bucket: String, key: String, contentType: String = "application/octet-stream") throws -> String {
        let r = try performHTTP(request("POST", url(bucket: bucket, key: key, query: [("uploads", "")]), headers: [("Content-Type", contentType)], body: .bytes([])))
        try check(r, "CreateMultipartUpload \(key)")
        guard let id = XML.first("UploadId", in: Substring(r.bodyString)) else {
            throw S3Error(status: r.status, code: "MalformedResponse", message: "no UploadId in \(r.bodyString.prefix(200))", operation: "CreateMultipartUpload \(key)")
        }
        return id
    }

    /// Uploads one part; returns its ETag.
    public func uploadPartSync(bucket: String, key: String, uploadID: String, partNumber: Int, bytes: [UInt8]) throws -> String {
        let u = url(bucket: bucket, key: key, query: [("partNumber", String(partNumber)), ("uploadId", uploadID)])
        // UNSIGNED-PAYLOAD: the part is not hashed twice (curl would hash it for the signature).
        let r = try performHTTP(request("PUT", u, body: .bytes(bytes)))
        try check(r, "UploadPart \(key) #\(partNumber)")
        guard let etag = r.headers["etag"] else {
            throw S3Error(status: r.status, code: "MalformedResponse", message: "no ETag for part \(partNumber)", operation: "UploadPart \(key)")
        }
        return etag
    }

    public func completeMultipartUploadSync(bucket: String, key: String, uploadID: String, parts: [(Int, String)]) throws {
        var xml = "<CompleteMultipartUpload>"
        for (n, etag) in parts { xml += "<Part><PartNumber>\(n)</PartNumber><ETag>\(XML.escape(etag))</ETag></Part>" }
        xml += "</CompleteMultipartUpload>"
        let r = try performHTTP(request("POST", url(bucket: bucket, key: key, query: [("uploadId", uploadID)]), headers: [("Content-Type", "application/xml")], body: .bytes(Array(xml.utf8))))
        try check(r, "CompleteMultipartUpload \(key)")
        // S3 may answer 200 with an error document.
        if r.bodyString.contains("<Error>") { throw Self.error(from: HTTPResponse(status: 500, headers: [:], body: r.body), operation: "CompleteMultipartUpload \(key)") }
    }

    public func abortMultipartUploadSync(bucket: String, key: String, uploadID: String) throws {
        let r = try performHTTP(request("DELETE", url(bucket: bucket, key: key, query: [("uploadId", uploadID)])))
        try check(r, "AbortMultipartUpload \(key)", allow: [404])
    }

    /// Open multipart uploads under `prefix`: (key, uploadId). For cleaning up after a killed writer.
    public func listMultipartUploadsSync(bucket: String, prefix: String = "") throws -> [(key: String, uploadID: String)] {
        let r = try performHTTP(request("GET", url(bucket: bucket, query: [("uploads", ""), ("prefix", prefix)])))
        try check(r, "ListMultipartUploads \(prefix)")
        return XML.elements("Upload", in: Substring(r.bodyString)).compactMap { u in
            guard let k = XML.first("Key", in: u), let id = XML.first("UploadId", in: u) else { return nil }
            return (k, id)
        }
    }

    // MARK: async conveniences
    //
    // Each runs its transfer on the shared BlockingPool. The single calls run to their end whatever happens
    // to the calling task: they are short, and callers use them to clean up after a cancellation (a failed
    // status, a deletion). A *Sync call made inside a pool job (a sidecar's dump upload) instead stops within
    // a second of that job's cancellation; so does `uploadMultipart` (then aborted).

    @discardableResult
    public func createBucket(_ bucket: String) async throws -> Bool {
        let c = self
        return try await runBlocking("s3", observingCancellation: false) { _ in try c.createBucketSync(bucket) }
    }

    public func putObject(bucket: String, key: String, bytes: [UInt8], contentType: String = "application/octet-stream") async throws {
        let c = self
        try await runBlocking("s3", observingCancellation: false) { _ in try c.putObjectSync(bucket: bucket, key: key, bytes: bytes, contentType: contentType) }
    }

    public func getObject(bucket: String, key: String) async throws -> [UInt8] {
        let c = self
        return try await runBlocking("s3", observingCancellation: false) { _ in try c.getObjectSync(bucket: bucket, key: key) }
    }

    public func headObject(bucket: String, key: String) async throws -> S3ObjectInfo? {
        let c = self
        return try await runBlocking("s3", observingCancellation: false) { _ in try c.headObjectSync(bucket: bucket, key: key) }
    }

    public func deleteObject(bucket: String, key: String) async throws {
        let c = self
        try await runBlocking("s3", observingCancellation: false) { _ in try c.deleteObjectSync(bucket: bucket, key: key) }
    }

    public func listObjects(bucket: String, prefix: String = "") async throws -> [S3ObjectInfo] {
        let c = self
        return try await runBlocking("s3", observingCancellation: false) { _ in try c.listObjectsSync(bucket: bucket, prefix: prefix) }
    }

    /// Multipart upload fed from an async sequence of byte chunks, bounded memory (one part filling plus at
    /// most `maxInFlight` parts uploading). Aborts the upload on any error or cancellation.
    public func uploadMultipart<S: AsyncSequence & Sendable>(
        bucket: String, key: String, partSize: Int = 8 << 20, maxInFlight: Int = 2, from source: S
    ) async throws -> MultipartUploadResult where S.Element == [UInt8] {
        let c = self
        let writer = try await runBlocking("s3") { _ in try MultipartWriter(client: c, bucket: bucket, key: key, partSize: partSize, maxInFlight: maxInFlight) }
        do {
            for try await chunk in source {
                try Task.checkCancellation()
                try await runBlocking("s3") { _ in try writer.write(chunk) }
            }
            return try await runBlocking("s3") { _ in try writer.finish() }
        } catch {
            _ = try? await runBlocking("s3", observingCancellation: false) { _ in writer.abort() }
            throw error
        }
    }
}

public struct MultipartUploadResult: Sendable {
    public var key: String
    public var size: Int64
    public var parts: Int
}

/// A blocking multipart writer for a thread that produces bytes (a pipeline): `write` fills a part buffer;
/// a full part goes to an uploader thread while the next fills; at most `maxInFlight` parts are uploading,
/// so memory stays under `(maxInFlight + 1) × partSize`. `finish` completes, `abort` (or any failure)
/// aborts the upload so that nothing appears under the key.
public final class MultipartWriter: @unchecked Sendable {
    public let client: S3Client
    public let bucket: String
    public let key: String
    public let uploadID: String
    let partSize: Int
    private var buffer: [UInt8] = []
    private var nextPart = 1
    private var total: Int64 = 0
    private let lock = NSCondition()
    private var inFlight = 0
    private let maxInFlight: Int
    private var etags: [Int: String] = [:]
    private var failure: Error?
    private var finished = false

    public init(client: S3Client, bucket: String, key: String, partSize: Int = 8 << 20, maxInFlight: Int = 2) throws {
        precondition(partSize >= 5 << 20 || ProcessInfo.processInfo.environment["AUTOMATE_S3_SMALL_PARTS"] != nil,
                     "S3 parts must be at least 5 MiB")
        self.client = client
        self.bucket = bucket
        self.key = key
        self.partSize = partSize
        self.maxInFlight = max(1, maxInFlight)
        self.uploadID = try client.createMultipartUploadSync(bucket: bucket, key: key)
        buffer.reserveCapacity(partSize)
    }

    public var bytesWritten: Int64 { lock.lock(); defer { lock.unlock() }; return total }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(partSize - buffer.count, bytes.count - offset)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
            offset += n
            if buffer.count == partSize { try flushPart() }
        }
        lock.lock(); total += Int64(bytes.count); lock.unlock()
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    private func flushPart() throws {
        let part = buffer
        buffer = []
        buffer.reserveCapacity(partSize)
        let number = nextPart
        nextPart += 1
        lock.lock()
        while inFlight >= maxInFlight && failure == nil { lock.wait() }
        if let failure { lock.unlock(); throw failure }
        inFlight += 1
        lock.unlock()
        // The part's transfer works for the writer's job: cancelling that job aborts it too.
        let job = BlockingJob.current
        let thread = Thread { [self] in
            do {
                let etag = try BlockingJob.withCurrent(job) {
                    try client.uploadPartSync(bucket: bucket, key: key, uploadID: uploadID, partNumber: number, bytes: part)
                }
                lock.lock(); etags[number] = etag
            } catch {
                lock.lock(); if failure == nil { failure = error }
            }
            inFlight -= 1
            lock.broadcast()
            lock.unlock()
        }
        thread.name = "s3.part.\(number)"
        thread.start()
    }

    private func drain() throws {
        lock.lock()
        while inFlight > 0 { lock.wait() }
        let failure = self.failure
        lock.unlock()
        if let failure { throw failure }
    }

    /// Uploads the last part, waits for all, completes. On failure the upload is aborted and the error thrown.
    public func finish() throws -> MultipartUploadResult {
        do {
            if !buffer.isEmpty || nextPart == 1 { try flushPart() }
            try drain()
            let parts = lock.withLock { etags.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
            try client.completeMultipartUploadSync(bucket: bucket, key: key, uploadID: uploadID, parts: parts)
            finished = true
            return MultipartUploadResult(key: key, size: bytesWritten, parts: parts.count)
        } catch {
            abort()
            throw error
        }
    }

    /// Aborts the upload (waits for parts in flight first). Idempotent; errors are swallowed.
    public func abort() {
        if finished { return }
        finished = true
        lock.lock()
        if failure == nil { failure = CancellationError() }
        while inFlight > 0 { lock.wait() }
        lock.unlock()
        // Cleanup: it runs even when the job this writer works for was cancelled.
        _ = try? BlockingJob.shielded { try client.abortMultipartUploadSync(bucket: bucket, key: key, uploadID: uploadID) }
    }
}
