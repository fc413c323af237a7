import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Filesystem mode: the S3 operations over `FSStore`.
struct FSBackend: S3Backend {
    let store: FSStore
    let region: String

    func handle(_ req: S3Request, body: RequestBody, log: RequestLog) async throws -> Response {
        guard let bucket = req.bucket else {
            guard req.method == "GET" else { throw S3Error.methodNotAllowed }
            return listBuckets()
        }
        guard let key = req.key else {
            return try await bucketOperation(req, bucket: bucket, body: body)
        }
        let bpath = try store.bucketPath(bucket)
        let path = try FSStore.objectPath(bucket: bpath, key: key)
        let q = req.query
        switch req.method {
        case "GET", "HEAD":
            if let id = q["uploadId"], req.method == "GET" { return try listParts(bpath, key: key, uploadId: id, query: q) }
            try rejectSubresources(q, allowed: ["versionId", "partNumber"])
            return try getObject(req, path: path, head: req.method == "HEAD", log: log)
        case "PUT":
            if let id = q["uploadId"], let pn = q["partNumber"] {
                guard req.headers["x-amz-copy-source"] == nil else { throw S3Error.notImplemented.with(message: "UploadPartCopy is not supported") }
                return try await uploadPart(req, bucket: bpath, key: key, uploadId: id, partNumber: pn, body: body, log: log)
            }
            try rejectSubresources(q, allowed: [])
            if let src = req.headers["x-amz-copy-source"] { return try copyObject(req, src: src, bucket: bpath, key: key, path: path) }
            return try await putObject(req, bucket: bpath, key: key, path: path, body: body, log: log)
        case "DELETE":
            if let id = q["uploadId"] {
                let dir = try FSStore.uploadDir(bucket: bpath, uploadId: id)
                guard try FSStore.uploadKey(bucket: bpath, uploadId: id) == key else { throw S3Error.noSuchUpload }
                removeTree(dir)
                return Reply.empty(status: 204)
            }
            try rejectSubresources(q, allowed: ["versionId"])
            try deleteObject(bucket: bpath, key: key, path: path)
            return Reply.empty(status: 204)
        case "POST":
            if q.has("uploads") {
                if key.hasSuffix("/") { throw S3Error.invalidKey }
                let id = try FSStore.createUpload(bucket: bpath, key: key)
                return Reply.xml(xmlHeader + "<InitiateMultipartUploadResult xmlns=\"\(s3NS)\"><Bucket>\(XML.escape(bucket))</Bucket><Key>\(XML.escape(key))</Key><UploadId>\(id)</UploadId></InitiateMultipartUploadResult>")
            }
            if let id = q["uploadId"] {
                return try await completeUpload(req, bucketName: bucket, bucket: bpath, key: key, path: path, uploadId: id, body: body)
            }
            throw S3Error.notImplemented
        default:
            throw S3Error.methodNotAllowed
        }
    }

    /// Sub-resources this gateway does not implement must not be mistaken for the plain operation.
    func rejectSubresources(_ q: QueryItems, allowed: Set<String>) throws {
        for (n, _) in q.items {
            if n.hasPrefix("X-Amz-") || n.hasPrefix("x-amz-") || n.hasPrefix("response-") || allowed.contains(n) { continue }
            throw S3Error.notImplemented.with(message: "The '\(n)' sub-resource is not implemented by this gateway.")
        }
    }

    // MARK: buckets

    func listBuckets() -> Response {
        var s = xmlHeader + "<ListAllMyBucketsResult xmlns=\"\(s3NS)\"><Owner><ID>automate</ID><DisplayName>automate</DisplayName></Owner><Buckets>"
        for (n, d) in store.listBuckets() {
            s += "<Bucket><Name>\(XML.escape(n))</Name><CreationDate>\(XML.date(d))</CreationDate></Bucket>"
        }
        s += "</Buckets></ListAllMyBucketsResult>"
        return Reply.xml(s)
    }

    func bucketOperation(_ req: S3Request, bucket: String, body: RequestBody) async throws -> Response {
        let q = req.query
        switch req.method {
        case "HEAD":
            _ = try store.bucketPath(bucket)
            return Reply.empty(headers: [("x-amz-bucket-region", region)])
        case "PUT":
            try rejectSubresources(q, allowed: [])
            // A CreateBucketConfiguration body may be sent; it is read and ignored.
            for try await _ in body {}
            try store.createBucket(bucket)
            return Reply.empty(headers: [("Location", "/" + bucket)])
        case "DELETE":
            try rejectSubresources(q, allowed: [])
            try store.deleteBucket(bucket)
            return Reply.empty(status: 204)
        case "POST":
            guard q.has("delete") else { throw S3Error.notImplemented }
            return try await deleteObjects(req, bucket: try store.bucketPath(bucket), body: body)
        case "GET":
            let bpath = try store.bucketPath(bucket)
            if q.has("location") {
                let loc = region == "us-east-1" ? "" : XML.escape(region)
                return Reply.xml(xmlHeader + "<LocationConstraint xmlns=\"\(s3NS)\">\(loc)</LocationConstraint>")
            }
            if q.has("uploads") { return listUploads(bucketName: bucket, bucket: bpath) }
            try rejectSubresources(q, allowed: ["list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token",
                                                "start-after", "encoding-type", "fetch-owner"])
            return try listObjects(req, bucketName: bucket, bucket: bpath)
        default:
            throw S3Error.methodNotAllowed
        }
    }

    func listObjects(_ req: S3Request, bucketName: String, bucket: String) throws -> Response {
        let q = req.query
        let v2 = q["list-type"] == "2"
        let prefix = q["prefix"] ?? ""
        let delimiter = q["delimiter"].flatMap { $0.isEmpty ? nil : $0 }
        var maxKeys = 1000
        if let m = q["max-keys"] {
            guard let n = Int(m), n >= 0 else { throw S3Error.invalidArgument("max-keys must be a non-negative integer") }
            maxKeys = min(n, 1000)
        }
        let urlEncode = q["encoding-type"] == "url"
        if let e = q["encoding-type"], e != "url" { throw S3Error.invalidArgument("Invalid Encoding Method specified in Request") }
        func enc(_ s: String) -> String { XML.escape(urlEncode ? URIEncoding.encode(s, keepSlash: true) : s) }
        var marker: String?
        if v2 {
            if let t = q["continuation-token"] {
                guard let d = Data(base64Encoded: t), let s = String(data: d, encoding: .utf8) else {
                    throw S3Error.invalidArgument("The continuation token provided is incorrect")
                }
                marker = s
            } else if let sa = q["start-after"], !sa.isEmpty {
                marker = sa
            }
        } else if let m = q["marker"], !m.isEmpty {
            marker = m
        }
        let r = store.list(bucket: bucket, prefix: prefix, delimiter: delimiter, marker: marker, maxKeys: maxKeys)
        var s = xmlHeader + (v2 ? "<ListBucketResult xmlns=\"\(s3NS)\">" : "<ListBucketResult xmlns=\"\(s3NS)\">")
        s += "<Name>\(XML.escape(bucketName))</Name><Prefix>\(enc(prefix))</Prefix>"
        if v2 {
            if let t = q["continuation-token"] { s += "<ContinuationToken>\(XML.escape(t))</ContinuationToken>" }
            if let sa = q["start-after"] { s += "<StartAfter>\(enc(sa))</StartAfter>" }
            s += "<KeyCount>\(r.objects.count + r.commonPrefixes.count)</KeyCount>"
        } else {
            s += "<Marker>\(enc(q["marker"] ?? ""))</Marker>"
        }
        s += "<MaxKeys>\(maxKeys)</MaxKeys>"
        if let d = delimiter { s += "<Delimiter>\(enc(d))</Delimiter>" }
        if urlEncode { s += "<EncodingType>url</EncodingType>" }
        s += "<IsTruncated>\(r.truncated)</IsTruncated>"
        if r.truncated, let n = r.nextMarker {
            if v2 {
                s += "<NextContinuationToken>\(Data(n.utf8).base64EncodedString())</NextContinuationToken>"
            } else if delimiter != nil {
                s += "<NextMarker>\(enc(n))</NextMarker>"
            }
        }
        let owner = (!v2 || q["fetch-owner"] == "true") ? "<Owner><ID>automate</ID><DisplayName>automate</DisplayName></Owner>" : ""
        for o in r.objects {
            s += "<Contents><Key>\(enc(o.key))</Key><LastModified>\(XML.date(o.mtime))</LastModified><ETag>&quot;\(o.etag)&quot;</ETag><Size>\(o.size)</Size>\(owner)<StorageClass>STANDARD</StorageClass></Contents>"
        }
        for p in r.commonPrefixes { s += "<CommonPrefixes><Prefix>\(enc(p))</Prefix></CommonPrefixes>" }
        s += "</ListBucketResult>"
        return Reply.xml(s)
    }

    // MARK: objects

    static func etagMatches(_ header: String, _ etag: String) -> Bool {
        for part in header.split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t == "*" { return true }
            var v = t.hasPrefix("W/") ? String(t.dropFirst(2)) : t
            if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            if v == etag { return true }
        }
        return false
    }

    func getObject(_ req: S3Request, path: String, head: Bool, log: RequestLog) throws -> Response {
        guard let info = statPath(path), info.isFile || (info.isDir && req.key?.hasSuffix("/") == true) else { throw S3Error.noSuchKey }
        let etag = info.isDir ? Hex.encode(Insecure.MD5.hash(data: [UInt8]())) : etagFor(path: path, info: info)
        let size = info.isDir ? 0 : info.size
        let h = req.headers
        let lastModified = XML.httpDate(info.mtime)
        let mtimeSec = floor(info.mtime.timeIntervalSince1970)
        if let im = h["if-match"], !Self.etagMatches(im, etag) { throw S3Error.preconditionFailed }
        if h["if-match"] == nil, let ius = h["if-unmodified-since"].flatMap(XML.parseHTTPDate), mtimeSec > ius.timeIntervalSince1970 {
            throw S3Error.preconditionFailed
        }
        var notModified = false
        if let inm = h["if-none-match"] { notModified = Self.etagMatches(inm, etag) }
        else if let ims = h["if-modified-since"].flatMap(XML.parseHTTPDate), mtimeSec <= ims.timeIntervalSince1970 { notModified = true }
        if notModified {
            return Reply.empty(status: 304, headers: [("ETag", "\"\(etag)\""), ("Last-Modified", lastModified)])
        }
        var start = 0, length = size, status = 200
        var extra: [(String, String)] = []
        if let range = h["range"], size > 0 || !range.isEmpty {
            if let (s, l) = try Self.parseRange(range, size: size) {
                start = s; length = l; status = 206
                extra.append(("Content-Range", "bytes \(s)-\(s + l - 1)/\(size)"))
            }
        }
        var headers: [(String, String)] = [("ETag", "\"\(etag)\""), ("Last-Modified", lastModified), ("Accept-Ranges", "bytes"),
                                           ("Content-Type", req.query["response-content-type"] ?? "application/octet-stream")]
        for (q, hname) in [("response-content-disposition", "Content-Disposition"), ("response-cache-control", "Cache-Control"),
                           ("response-content-encoding", "Content-Encoding"), ("response-content-language", "Content-Language"),
                           ("response-expires", "Expires")] {
            if let v = req.query[q] { headers.append((hname, v)) }
        }
        headers += extra
        headers.append(("Content-Length", String(length)))
        if head || length == 0 {
            return Response(status: .init(code: status), headers: Reply.fields(headers), body: ResponseBody())
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw S3Error.noSuchKey }
        log.deferred = true
        let (rStart, rLength, rStatus) = (start, length, status)
        let body = ResponseBody(contentLength: rLength) { writer in
            defer { close(fd) }
            var off = rStart
            var remaining = rLength
            let allocator = ByteBufferAllocator()
            do {
                while remaining > 0 {
                    let want = min(remaining, 128 << 10)
                    var buf = allocator.buffer(capacity: want)
                    let n = buf.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { p in
                        var r: Int
                        repeat { r = pread(fd, p.baseAddress, want, off_t(off)) } while r < 0 && errno == EINTR
                        return max(r, 0)
                    }
                    if n == 0 { throw S3Error("InternalError", 500, "object shrank while being read") }
                    off += n
                    remaining -= n
                    try await writer.write(buf)
                }
                try await writer.finish(nil)
                log.finish(status: rStatus, bytes: rLength)
            } catch {
                log.finish(status: rStatus, bytes: rLength - remaining, error: S3Error("ClientAbort", 499, "\(error)"))
                throw error
            }
        }
        return Response(status: .init(code: status), headers: Reply.fields(headers), body: body)
    }

    /// `bytes=a-b`, `bytes=a-`, `bytes=-n`. nil: ignore the header (serve whole). Throws InvalidRange when unsatisfiable.
    static func parseRange(_ h: String, size: Int) throws -> (Int, Int)? {
        let t = h.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("bytes="), !t.contains(",") else { return nil }
        let spec = t.dropFirst(6)
        guard let dash = spec.firstIndex(of: "-") else { return nil }
        let a = spec[..<dash].trimmingCharacters(in: .whitespaces), b = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        if a.isEmpty {
            guard let n = Int(b), n >= 0 else { return nil }
            if n == 0 || size == 0 { throw S3Error.invalidRange }
            let l = min(n, size)
            return (size - l, l)
        }
        guard let s = Int(a), s >= 0 else { return nil }
        var e = size - 1
        if !b.isEmpty {
            guard let x = Int(b), x >= s else { return nil }
            e = min(x, size - 1)
        }
        if s >= size { throw S3Error.invalidRange }
        return (s, e - s + 1)
    }

    /// Streams the body through the payload checks into `sink`.
    static func receive(_ req: S3Request, body: RequestBody, sink: (UnsafeRawBufferPointer) throws -> Void) async throws -> PayloadDecoder {
        let decoder = try PayloadDecoder(mode: req.payload, headers: req.headers)
        for try await buf in body {
            for piece in try decoder.feed(buf) {
                try piece.withUnsafeReadableBytes { try sink($0) }
            }
        }
        try decoder.finish()
        return decoder
    }

    /// Streams the body through the payload checks into a pending file (which hashes MD5 in parallel).
    static func receive(_ req: S3Request, body: RequestBody, into file: PendingFile) async throws -> PayloadDecoder {
        let decoder = try PayloadDecoder(mode: req.payload, headers: req.headers, hashMD5: false)
        for try await buf in body {
            for piece in try decoder.feed(buf) {
                try piece.withUnsafeReadableBytes { try file.write($0) }
            }
        }
        try decoder.finish(md5: try file.drain())
        return decoder
    }

    func putObject(_ req: S3Request, bucket: String, key: String, path: String, body: RequestBody, log: RequestLog) async throws -> Response {
        let h = req.headers
        let noClobber = h["if-none-match"]?.trimmingCharacters(in: .whitespaces) == "*"
        if noClobber, statPath(path) != nil { throw S3Error.preconditionFailed }
        if let im = h["if-match"] {
            guard let info = statPath(path), info.isFile, Self.etagMatches(im, etagFor(path: path, info: info)) else {
                throw statPath(path) == nil ? S3Error.noSuchKey : S3Error.preconditionFailed
            }
        }
        let dir = (path as NSString).deletingLastPathComponent
        if key.hasSuffix("/") {
            // Folder marker: only empty bodies; stored as a folder.
            let d = try await Self.receive(req, body: body) { p in if p.count > 0 { throw S3Error.invalidArgument("A key ending in '/' names a folder and cannot hold data.") } }
            try makeDirs(String(path.dropLast()))
            return Reply.empty(headers: [("ETag", "\"\(Hex.encode(d.md5Digest))\"")])
        }
        try makeDirs(dir)
        let file = try PendingFile(dir: dir)
        do {
            let decoder = try await Self.receive(req, body: body, into: file)
            let etag = Hex.encode(decoder.md5Digest)
            try file.commit(to: path, etag: etag, noClobber: noClobber)
            log.bytes = decoder.decodedBytes
            return Reply.empty(headers: [("ETag", "\"\(etag)\"")])
        } catch {
            file.abort()
            throw error
        }
    }

    func deleteObject(bucket: String, key: String, path: String) throws {
        if key.hasSuffix("/") {
            if rmdir(String(path.dropLast())) == 0 { FSStore.pruneEmptyParents(bucket: bucket, key: String(key.dropLast())) }
            return
        }
        guard let info = statPath(path), info.isFile else { return } // S3: deleting a missing key succeeds
        if unlink(path) == 0 {
            FSStore.pruneEmptyParents(bucket: bucket, key: key)
        } else if errno != ENOENT {
            throw S3Error("InternalError", 500, "unlink: \(errnoText())")
        }
    }

    func deleteObjects(_ req: S3Request, bucket: String, body: RequestBody) async throws -> Response {
        var data = [UInt8]()
        _ = try await Self.receive(req, body: body) { p in
            data.append(contentsOf: p)
            if data.count > 2 << 20 { throw S3Error.malformedXML }
        }
        let text = Substring(String(decoding: data, as: UTF8.self))
        let quiet = XML.first("Quiet", in: text)?.lowercased() == "true"
        let objects = XML.elements("Object", in: text)
        guard !objects.isEmpty, objects.count <= 1000 else { throw S3Error.malformedXML }
        var s = xmlHeader + "<DeleteResult xmlns=\"\(s3NS)\">"
        for o in objects {
            guard let key = XML.first("Key", in: o) else { throw S3Error.malformedXML }
            do {
                let path = try FSStore.objectPath(bucket: bucket, key: key)
                try deleteObject(bucket: bucket, key: key, path: path)
                if !quiet { s += "<Deleted><Key>\(XML.escape(key))</Key></Deleted>" }
            } catch let e as S3Error {
                s += "<Error><Key>\(XML.escape(key))</Key><Code>\(e.code)</Code><Message>\(XML.escape(e.message))</Message></Error>"
            }
        }
        s += "</DeleteResult>"
        return Reply.xml(s)
    }

    func copyObject(_ req: S3Request, src: String, bucket: String, key: String, path: String) throws -> Response {
        var s = src
        if let q = s.firstIndex(of: "?") { s = String(s[..<q]) }
        guard let decoded = URIEncoding.decode(Substring(s)) else { throw S3Error.invalidArgument("Invalid copy source encoding") }
        let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
        guard let slash = trimmed.firstIndex(of: "/") else { throw S3Error.invalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey") }
        let sbucket = try store.bucketPath(String(trimmed[..<slash]))
        let skey = String(trimmed[trimmed.index(after: slash)...])
        let spath = try FSStore.objectPath(bucket: sbucket, key: skey)
        guard let sinfo = statPath(spath), sinfo.isFile else { throw S3Error.noSuchKey }
        let setag = etagFor(path: spath, info: sinfo)
        let h = req.headers
        if let v = h["x-amz-copy-source-if-match"], !Self.etagMatches(v, setag) { throw S3Error.preconditionFailed }
        if let v = h["x-amz-copy-source-if-none-match"], Self.etagMatches(v, setag) { throw S3Error.preconditionFailed }
        let noClobber = h["if-none-match"]?.trimmingCharacters(in: .whitespaces) == "*"
        if noClobber, statPath(path) != nil { throw S3Error.preconditionFailed }
        let dir = (path as NSString).deletingLastPathComponent
        try makeDirs(dir)
        let file = try PendingFile(dir: dir)
        do {
            try appendFile(from: spath, to: file.fd)
            try file.commit(to: path, etag: setag, noClobber: noClobber)
        } catch {
            file.abort()
            throw error
        }
        let mtime = statPath(path)?.mtime ?? Date()
        return Reply.xml(xmlHeader + "<CopyObjectResult xmlns=\"\(s3NS)\"><LastModified>\(XML.date(mtime))</LastModified><ETag>&quot;\(setag)&quot;</ETag></CopyObjectResult>")
    }

    // MARK: multipart

    func uploadPart(_ req: S3Request, bucket: String, key: String, uploadId: String, partNumber: String, body: RequestBody, log: RequestLog) async throws -> Response {
        guard let n = Int(partNumber), (1...10000).contains(n) else { throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive") }
        let dir = try FSStore.uploadDir(bucket: bucket, uploadId: uploadId)
        guard try FSStore.uploadKey(bucket: bucket, uploadId: uploadId) == key else { throw S3Error.noSuchUpload }
        let file = try PendingFile(dir: dir)
        do {
            let decoder = try await Self.receive(req, body: body, into: file)
            let etag = Hex.encode(decoder.md5Digest)
            guard statPath(dir) != nil else { throw S3Error.noSuchUpload } // aborted meanwhile
            try file.commit(to: dir + "/" + FSStore.partName(n), etag: etag, noClobber: false)
            log.bytes = decoder.decodedBytes
            return Reply.empty(headers: [("ETag", "\"\(etag)\"")])
        } catch {
            file.abort()
            throw error
        }
    }

    func listParts(_ bucket: String, key: String, uploadId: String, query: QueryItems) throws -> Response {
        let dir = try FSStore.uploadDir(bucket: bucket, uploadId: uploadId)
        guard try FSStore.uploadKey(bucket: bucket, uploadId: uploadId) == key else { throw S3Error.noSuchUpload }
        let marker = Int(query["part-number-marker"] ?? "0") ?? 0
        let maxParts = min(Int(query["max-parts"] ?? "1000") ?? 1000, 1000)
        let all = FSStore.listParts(dir: dir).filter { $0.number > marker }
        let parts = Array(all.prefix(maxParts))
        var s = xmlHeader + "<ListPartsResult xmlns=\"\(s3NS)\"><Bucket>\(XML.escape(bucket.split(separator: "/").last.map(String.init) ?? ""))</Bucket><Key>\(XML.escape(key))</Key><UploadId>\(uploadId)</UploadId>"
        s += "<PartNumberMarker>\(marker)</PartNumberMarker><MaxParts>\(maxParts)</MaxParts><IsTruncated>\(all.count > parts.count)</IsTruncated>"
        if all.count > parts.count, let last = parts.last { s += "<NextPartNumberMarker>\(last.number)</NextPartNumberMarker>" }
        s += "<StorageClass>STANDARD</StorageClass>"
        for p in parts {
            s += "<Part><PartNumber>\(p.number)</PartNumber><LastModified>\(XML.date(p.mtime))</LastModified><ETag>&quot;\(p.etag)&quot;</ETag><Size>\(p.size)</Size></Part>"
        }
        s += "</ListPartsResult>"
        return Reply.xml(s)
    }

    func listUploads(bucketName: String, bucket: String) -> Response {
        var s = xmlHeader + "<ListMultipartUploadsResult xmlns=\"\(s3NS)\"><Bucket>\(XML.escape(bucketName))</Bucket><IsTruncated>false</IsTruncated>"
        for id in (listDir(bucket + "/" + uploadsFolder) ?? []).sorted() {
            guard let key = try? FSStore.uploadKey(bucket: bucket, uploadId: id), let i = statPath(bucket + "/" + uploadsFolder + "/" + id) else { continue }
            s += "<Upload><Key>\(XML.escape(key))</Key><UploadId>\(id)</UploadId><Initiated>\(XML.date(i.mtime))</Initiated><StorageClass>STANDARD</StorageClass></Upload>"
        }
        s += "</ListMultipartUploadsResult>"
        return Reply.xml(s)
    }

    func completeUpload(_ req: S3Request, bucketName: String, bucket: String, key: String, path: String, uploadId: String, body: RequestBody) async throws -> Response {
        let dir = try FSStore.uploadDir(bucket: bucket, uploadId: uploadId)
        guard try FSStore.uploadKey(bucket: bucket, uploadId: uploadId) == key else { throw S3Error.noSuchUpload }
        var data = [UInt8]()
        _ = try await Self.receive(req, body: body) { p in
            data.append(contentsOf: p)
            if data.count > 4 << 20 { throw S3Error.malformedXML }
        }
        let text = Substring(String(decoding: data, as: UTF8.self))
        let partEls = XML.elements("Part", in: text)
        guard !partEls.isEmpty else { throw S3Error.malformedXML }
        var wanted: [(Int, String)] = []
        for p in partEls {
            guard let nText = XML.first("PartNumber", in: p), let n = Int(nText), let e = XML.first("ETag", in: p) else { throw S3Error.malformedXML }
            var etag = e.trimmingCharacters(in: .whitespaces)
            if etag.hasPrefix("\"") && etag.hasSuffix("\"") && etag.count >= 2 { etag = String(etag.dropFirst().dropLast()) }
            if let last = wanted.last, last.0 >= n { throw S3Error.invalidPartOrder }
            wanted.append((n, etag))
        }
        let have = Dictionary(uniqueKeysWithValues: FSStore.listParts(dir: dir).map { ($0.number, $0) })
        var md5s = [UInt8]()
        for (n, etag) in wanted { guard let p = have[n], p.etag == etag else { throw S3Error.invalidPart } }
        for (i, (n, etag)) in wanted.enumerated() {
            let p = have[n]!
            if i < wanted.count - 1 && p.size < 5 << 20 { throw S3Error.entityTooSmall }
            md5s += Hex.decode(etag) ?? []
        }
        let etag = Hex.encode(Insecure.MD5.hash(data: md5s)) + "-\(wanted.count)"
        let noClobber = req.headers["if-none-match"]?.trimmingCharacters(in: .whitespaces) == "*"
        if noClobber, statPath(path) != nil { throw S3Error.preconditionFailed }
        let fdir = (path as NSString).deletingLastPathComponent
        try makeDirs(fdir)
        let file = try PendingFile(dir: fdir)
        do {
            for (n, _) in wanted { try appendFile(from: dir + "/" + FSStore.partName(n), to: file.fd) }
            try file.commit(to: path, etag: etag, noClobber: noClobber)
        } catch {
            file.abort()
            throw error
        }
        removeTree(dir)
        return Reply.xml(xmlHeader + "<CompleteMultipartUploadResult xmlns=\"\(s3NS)\"><Location>/\(XML.escape(bucketName))/\(XML.escape(key))</Location><Bucket>\(XML.escape(bucketName))</Bucket><Key>\(XML.escape(key))</Key><ETag>&quot;\(etag)&quot;</ETag></CompleteMultipartUploadResult>")
    }
}
