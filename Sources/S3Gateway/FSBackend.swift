import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import S3Client
import Synchronization
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
            return try await FilePool.run { self.listBuckets() }
        }
        guard let key = req.key else {
            return try await bucketOperation(req, bucket: bucket, body: body)
        }
        // `key` passed FSStore.validateKey in the responder.
        let store = self.store
        let q = req.query
        if req.method == "HEAD" || (req.method == "GET" && q["uploadId"] == nil) {
            // One trip to the file pool: the bucket, then the object (a GET's time to first byte).
            return try await FilePool.run {
                let path = KeyLayout.file(bucket: try store.bucketPath(bucket), key: key)
                try self.rejectSubresources(q, allowed: ["versionId", "partNumber"])
                return try self.getObject(req, path: path, head: req.method == "HEAD", log: log)
            }
        }
        let (bpath, path) = try await FilePool.run {
            let bpath = try store.bucketPath(bucket)
            return (bpath, KeyLayout.file(bucket: bpath, key: key))
        }
        switch req.method {
        case "GET":
            // With an uploadId (the other GETs and HEAD were answered above).
            return try await FilePool.run { try self.listParts(bpath, key: key, uploadId: q["uploadId"] ?? "", query: q) }
        case "PUT":
            if let id = q["uploadId"], let pn = q["partNumber"] {
                if let src = req.headers["x-amz-copy-source"] {
                    return try await uploadPartCopy(req, bucket: bpath, key: key, uploadId: id, partNumber: pn, src: src)
                }
                return try await uploadPart(req, bucket: bpath, key: key, uploadId: id, partNumber: pn, body: body, log: log)
            }
            try rejectSubresources(q, allowed: [])
            if let src = req.headers["x-amz-copy-source"] { return try await copyObject(req, src: src, bucket: bpath, key: key, path: path) }
            return try await putObject(req, bucket: bpath, key: key, path: path, body: body, log: log)
        case "DELETE":
            if let id = q["uploadId"] {
                try await FilePool.run {
                    let dir = try FSStore.uploadDir(bucket: bpath, key: key, uploadId: id)
                    removeTree(dir)
                    store.assemblies.forget(dir: dir)
                }
                return Reply.empty(status: 204)
            }
            try rejectSubresources(q, allowed: ["versionId"])
            try await FilePool.run { try self.deleteObject(bucket: bpath, key: key, path: path) }
            return Reply.empty(status: 204)
        case "POST":
            if q.has("uploads") {
                return try await FilePool.run { try self.createUpload(req, bucketName: bucket, bucket: bpath, key: key) }
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
            _ = try await FilePool.run { try self.store.bucketPath(bucket) }
            return Reply.empty(headers: [("x-amz-bucket-region", region)])
        case "PUT":
            try rejectSubresources(q, allowed: [])
            // A CreateBucketConfiguration body may be sent; it is read and ignored.
            for try await _ in body {}
            do {
                try await FilePool.run { try self.store.createBucket(bucket) }
            } catch let e as S3Error where e.code == S3Error.bucketExists.code && region == "us-east-1" {
                // S3 answers 200 for a bucket one already owns in us-east-1 (and leaves its objects alone).
            }
            return Reply.empty(headers: [("Location", "/" + bucket)])
        case "DELETE":
            try rejectSubresources(q, allowed: [])
            try await FilePool.run { try self.store.deleteBucket(bucket) }
            return Reply.empty(status: 204)
        case "POST":
            guard q.has("delete") else { throw S3Error.notImplemented }
            return try await deleteObjects(req, bucket: try await FilePool.run { try self.store.bucketPath(bucket) }, body: body)
        case "GET":
            let bpath = try await FilePool.run { try self.store.bucketPath(bucket) }
            if q.has("location") {
                let loc = region == "us-east-1" ? "" : XML.escape(region)
                return Reply.xml(xmlHeader + "<LocationConstraint xmlns=\"\(s3NS)\">\(loc)</LocationConstraint>")
            }
            if q.has("uploads") { return try await FilePool.run { self.listUploads(bucketName: bucket, bucket: bpath) } }
            try rejectSubresources(q, allowed: ["list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token",
                                                "start-after", "encoding-type", "fetch-owner"])
            return try await FilePool.run { try self.listObjects(req, bucketName: bucket, bucket: bpath) }
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

    /// An object's file, open, with its ETag and metadata. A write or delete of a neighbour key may move
    /// it into or out of its folder (`a` ↔ `a/.automate-object`) at any moment: when it is not found where
    /// it was resolved, or moved while its ETag and metadata were read, it is looked up again while no move
    /// of it can run (the key's `CommitLock`).
    struct OpenObject {
        let path: String
        let file: OpenFile
        let info: FileInfo
        let etag: String
        let meta: ObjectMetadata
    }

    func openObject(_ resolved: String) -> OpenObject? {
        func attempt(_ path: String) -> OpenObject? {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            let file = OpenFile(fd)
            var st = stat()
            guard fstat(fd, &st) == 0 else { return nil }
            let info = FileInfo(st)
            guard info.isFile else { return nil }
            let object = OpenObject(path: path, file: file, info: info, etag: etagFor(path: path, info: info), meta: store.metadata.load(path: path, info: info))
            guard statPath(path)?.ino == info.ino else { return nil }
            return object
        }
        return attempt(resolved) ?? CommitLock.withLock(KeyLayout.lockName(resolved)) { attempt(KeyLayout.relocated(resolved)) }
    }

    func getObject(_ req: S3Request, path resolved: String, head: Bool, log: RequestLog) throws -> Response {
        guard let object = openObject(resolved) else { throw S3Error.noSuchKey }
        let (path, info, etag, meta) = (object.path, object.info, object.etag, object.meta)
        let size = info.size
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
        if let pn = req.query["partNumber"] {
            guard h["range"] == nil else { throw S3Error("InvalidRequest", 400, "Cannot specify both Range header and partNumber query parameter") }
            guard let n = Int(pn), (1...10000).contains(n) else {
                throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive")
            }
            let parts = meta.partSizes ?? [size]
            guard n <= parts.count else { throw S3Error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable") }
            start = parts[0..<(n - 1)].reduce(0, +)
            length = parts[n - 1]
            status = 206
            if length > 0 { extra.append(("Content-Range", "bytes \(start)-\(start + length - 1)/\(size)")) }
            if meta.partSizes != nil { extra.append(("x-amz-mp-parts-count", String(parts.count))) }
        } else if let range = h["range"], size > 0 || !range.isEmpty {
            if let (s, l) = try Self.parseRange(range, size: size) {
                start = s; length = l; status = 206
                extra.append(("Content-Range", "bytes \(s)-\(s + l - 1)/\(size)"))
            }
        }
        var headers: [(String, String)] = [("ETag", "\"\(etag)\""), ("Last-Modified", lastModified), ("Accept-Ranges", "bytes")]
        // Stored headers, then the response-* overrides of a (presigned) GET in their place.
        var stored = meta.responseHeaders
        for (q, hname) in [("response-content-type", "Content-Type"), ("response-content-disposition", "Content-Disposition"),
                           ("response-cache-control", "Cache-Control"), ("response-content-encoding", "Content-Encoding"),
                           ("response-content-language", "Content-Language"), ("response-expires", "Expires")] {
            if let v = req.query[q] {
                stored.removeAll { $0.0 == hname }
                stored.append((hname, v))
            }
        }
        headers += stored
        headers += extra
        headers.append(("Content-Length", String(length)))
        if head || length == 0 {
            return Response(status: .init(code: status), headers: Reply.fields(headers), body: ResponseBody())
        }
        let file = object.file
        // The whole range is read once, in order: the kernel may read ahead as far as it likes.
        _ = posix_fadvise(file.fd, off_t(start), off_t(length), Int32(POSIX_FADV_SEQUENTIAL))
        log.deferred = true
        let (rStart, rLength, rStatus) = (start, length, status)
        let fileRegions = req.fileRegions
        let body = ResponseBody(contentLength: rLength) { writer in
            // On the plain listener the connection sends the range from the file itself (sendfile); the
            // request waits until it is sent, so its log line says whether the client got it.
            if let sent = await fileRegions?.send(fd: file.fd, offset: rStart, length: rLength) {
                do {
                    try await writer.finish(nil)
                    try await sent.get()
                    log.finish(status: rStatus, bytes: rLength)
                } catch {
                    log.finish(status: rStatus, bytes: 0, error: S3Error("ClientAbort", 499, "\(error)"))
                    throw error
                }
                return
            }
            // `readAhead` reads of a chunk run on the file pool while the socket takes the chunk before them
            // (`writer.write` waits while the socket is full), so the disk and the socket work at once. A chunk
            // (`readChunkSize(reads:)`: large for a lone GET, smaller when many share the read budget) is read
            // into buffers of `readBufferSize` (glibc's heap, not mmap, serves them), reused round-robin across
            // `readAhead + 2` chunks: no allocation per chunk while the socket keeps up, and a buffer NIO still
            // holds (its last bytes not yet sent) is replaced, never overwritten.
            Self.activeReads.add(1, ordering: .relaxed)
            defer { Self.activeReads.subtract(1, ordering: .relaxed) }
            let slots = (0..<(Self.readAhead + 2)).map { _ in BufferSlot() }
            var reads: [Task<[ByteBuffer], any Error>] = []
            var (nextSlot, readOffset, unread, remaining) = (0, rStart, rLength, rLength)
            func readMore() {
                while reads.count < Self.readAhead, unread > 0 {
                    let chunk = Self.readChunkSize(reads: Self.activeReads.load(ordering: .relaxed))
                    let (slot, at, want) = (slots[nextSlot], readOffset, min(unread, chunk))
                    nextSlot = (nextSlot + 1) % slots.count
                    readOffset += want
                    unread -= want
                    reads.append(Task {
                        try await FilePool.run {
                            try slot.buffers.withLock { bufs in
                                try readChunk(file.fd, at: at, length: want, into: &bufs, pieceSize: Self.readBufferSize, path: path)
                                return bufs
                            }
                        }
                    })
                }
            }
            defer { for r in reads { r.cancel() } }
            do {
                readMore()
                while !reads.isEmpty {
                    let bufs = try await reads.removeFirst().value
                    readMore()
                    try await writer.write(contentsOf: bufs)
                    remaining -= bufs.reduce(0) { $0 + $1.readableBytes }
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

    /// GET bodies being sent in this process right now; their chunks share `readBudget`.
    static let activeReads = Atomic<Int>(0)
    /// Bytes of read chunks all GET bodies together aim to hold (each holds about `readAhead + 2` chunks).
    static let readBudget = 4 << 20
    /// The largest chunk, one job on the file pool and one write to the socket (a lone GET uses it).
    static let maximumReadChunk = 512 << 10
    /// The buffers a chunk is read into, and the smallest chunk: below glibc's mmap threshold as the gateway
    /// tunes it (256 KiB).
    static let readBufferSize = 128 << 10
    /// Reads of a GET's body running ahead of the one being sent.
    static let readAhead = 1

    /// The chunk size when `reads` GET bodies are being sent: the largest power of two in
    /// `readBufferSize...maximumReadChunk` such that `reads × (readAhead + 2) × size <= readBudget`, but never
    /// less than `readBufferSize` (what the gateway read before this became adaptive).
    static func readChunkSize(reads: Int) -> Int {
        let share = readBudget / (max(reads, 1) * (readAhead + 2))
        var size = readBufferSize
        while size * 2 <= min(share, maximumReadChunk) { size *= 2 }
        return size
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
            for piece in try decoder.feed(buf) { try await file.write(piece) }
        }
        try decoder.finish(md5: try await file.drain())
        return decoder
    }

    func putObject(_ req: S3Request, bucket: String, key: String, path: String, body: RequestBody, log: RequestLog) async throws -> Response {
        let condition = WriteCondition(headers: req.headers)
        let meta = try ObjectMetadata(requestHeaders: req.headers)
        let metadata = store.metadata
        let target = try await FilePool.run {
            // Fail early (before receiving the body); checked again at the rename.
            try condition.check(path: path)
            return try KeyLayout.prepareWrite(bucket: bucket, key: key, metadata: metadata)
        }
        let file = try await PendingFile.create(dir: parentPath(target))
        do {
            let decoder = try await Self.receive(req, body: body, into: file)
            let etag = Hex.encode(decoder.md5Digest)
            try await file.commit(to: target, etag: etag, meta: meta, store: store.metadata, condition: condition)
            log.bytes = decoder.decodedBytes
            return Reply.empty(headers: [("ETag", "\"\(etag)\"")])
        } catch {
            await file.abort()
            throw error
        }
    }

    func deleteObject(bucket: String, key: String, path resolved: String) throws {
        // Under the key's lock, so a concurrent delete of a neighbour cannot move the object away between
        // finding it and unlinking it (the delete would succeed and leave the object in place).
        let (path, removed): (String, Int32) = CommitLock.withLock(KeyLayout.lockName(resolved)) {
            let path = KeyLayout.relocated(resolved)
            guard let info = statPath(path), info.isFile else { return (path, ENOENT) } // S3: deleting a missing key succeeds
            let r = unlink(path)
            if r == 0 { store.metadata.removeSideFile(objectPath: path) }
            return (path, r == 0 ? 0 : errno)
        }
        if removed == 0 {
            FSStore.pruneFolders(bucket: bucket, from: parentPath(path))
        } else if removed != ENOENT {
            throw S3Error("InternalError", 500, "unlink \(path): \(String(cString: strerror(removed)))")
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
        let keys = try objects.map { o in
            guard let key = XML.first("Key", in: o) else { throw S3Error.malformedXML }
            return key
        }
        let s = try await FilePool.run {
            var s = xmlHeader + "<DeleteResult xmlns=\"\(s3NS)\">"
            for key in keys {
                do {
                    try FSStore.validateKey(key)
                    try self.deleteObject(bucket: bucket, key: key, path: KeyLayout.file(bucket: bucket, key: key))
                    if !quiet { s += "<Deleted><Key>\(XML.escape(key))</Key></Deleted>" }
                } catch let e as S3Error {
                    s += "<Error><Key>\(XML.escape(key))</Key><Code>\(e.code)</Code><Message>\(XML.escape(e.message))</Message></Error>"
                }
            }
            return s + "</DeleteResult>"
        }
        return Reply.xml(s)
    }

    /// The source of a CopyObject / UploadPartCopy: `x-amz-copy-source` (`bucket/key`, URL-encoded, optional
    /// leading `/` and `?versionId=`), resolved to a file of this gateway.
    func copySource(_ src: String) throws -> (bucket: String, key: String, path: String, info: FileInfo) {
        var s = src
        if let q = s.firstIndex(of: "?") { s = String(s[..<q]) }
        guard let decoded = URIEncoding.decode(Substring(s)) else { throw S3Error.invalidArgument("Invalid copy source encoding") }
        let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
        guard let slash = trimmed.firstIndex(of: "/") else { throw S3Error.invalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey") }
        let sbucket = try store.bucketPath(String(trimmed[..<slash]))
        let skey = String(trimmed[trimmed.index(after: slash)...])
        try FSStore.validateKey(skey)
        let spath = KeyLayout.file(bucket: sbucket, key: skey)
        guard let sinfo = statPath(spath), sinfo.isFile else { throw S3Error.noSuchKey }
        return (sbucket, skey, spath, sinfo)
    }

    /// The `x-amz-copy-source-if-*` conditions against the source's ETag and mtime.
    func checkCopySourceConditions(_ h: [String: String], etag: String, info: FileInfo) throws {
        let mtimeSec = floor(info.mtime.timeIntervalSince1970)
        if let v = h["x-amz-copy-source-if-match"], !Self.etagMatches(v, etag) { throw S3Error.preconditionFailed }
        if let v = h["x-amz-copy-source-if-none-match"], Self.etagMatches(v, etag) { throw S3Error.preconditionFailed }
        if let v = h["x-amz-copy-source-if-unmodified-since"].flatMap(XML.parseHTTPDate), mtimeSec > v.timeIntervalSince1970 {
            throw S3Error.preconditionFailed
        }
        if let v = h["x-amz-copy-source-if-modified-since"].flatMap(XML.parseHTTPDate), mtimeSec <= v.timeIntervalSince1970 {
            throw S3Error.preconditionFailed
        }
    }

    func copyObject(_ req: S3Request, src: String, bucket: String, key: String, path: String) async throws -> Response {
        let h = req.headers
        let directive = h["x-amz-metadata-directive"]?.uppercased() ?? "COPY"
        let condition = WriteCondition(headers: h)
        let (source, setag, meta, target) = try await FilePool.run {
            let source = try self.copySource(src)
            let setag = etagFor(path: source.path, info: source.info)
            try self.checkCopySourceConditions(h, etag: setag, info: source.info)
            guard directive == "COPY" || directive == "REPLACE" else {
                throw S3Error.invalidArgument("Unknown metadata directive.")
            }
            if directive == "COPY" && source.path == path {
                throw S3Error("InvalidRequest", 400, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.")
            }
            let stored = self.store.metadata.load(path: source.path, info: source.info)
            var meta = try directive == "REPLACE" ? ObjectMetadata(requestHeaders: h) : stored
            // The copy keeps the source's ETag, so it keeps its part boundaries too.
            meta.partRuns = stored.partRuns
            try condition.check(path: path)
            return (source, setag, meta, try KeyLayout.prepareWrite(bucket: bucket, key: key, metadata: self.store.metadata))
        }
        let file = try await PendingFile.create(dir: parentPath(target))
        do {
            try await file.append(contentsOf: source.path, offset: 0, length: source.info.size)
            try await file.commit(to: target, etag: setag, meta: meta, store: store.metadata, condition: condition)
        } catch {
            await file.abort()
            throw error
        }
        let mtime = try await FilePool.run { statPath(target)?.mtime ?? Date() }
        return Reply.xml(xmlHeader + "<CopyObjectResult xmlns=\"\(s3NS)\"><LastModified>\(XML.date(mtime))</LastModified><ETag>&quot;\(setag)&quot;</ETag></CopyObjectResult>")
    }
}
