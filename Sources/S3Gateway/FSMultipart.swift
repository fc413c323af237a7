import Crypto
import Foundation
import Hummingbird
import NIOCore
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Filesystem mode: multipart uploads, kept in `<bucket>/.automate-uploads/<uploadId>/`.
///
/// Parts of the common shape (all the stride's size but the last, see `AssemblyRegistry`) are written once,
/// straight into the upload's `assembly` file at `(n - 1) * stride`; any other part upload is staged in its own
/// temp file, renamed to `data-*`. Either way a `PartRecord` committed last says where the part is (the last
/// one completed wins). CompleteMultipartUpload of parts 1...N laid out in the assembly copies at most the
/// last part into it and renames it into place; any other list of parts is copied into a new file. The part
/// sizes are recorded in the object's metadata.
extension FSBackend {
    func createUpload(_ req: S3Request, bucketName: String, bucket: String, key: String) throws -> Response {
        let meta = try ObjectMetadata(requestHeaders: req.headers)
        let id = try FSStore.createUpload(bucket: bucket, key: key, meta: meta)
        return Reply.xml(xmlHeader + "<InitiateMultipartUploadResult xmlns=\"\(s3NS)\"><Bucket>\(XML.escape(bucketName))</Bucket><Key>\(XML.escape(key))</Key><UploadId>\(id)</UploadId></InitiateMultipartUploadResult>")
    }

    static func partNumber(_ s: String) throws -> Int {
        guard let n = Int(s), (1...10000).contains(n) else { throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive") }
        return n
    }

    /// The payload length a request declares: `x-amz-decoded-content-length` for aws-chunked bodies, else
    /// Content-Length.
    static func declaredLength(_ req: S3Request) -> Int? {
        switch req.payload {
        case .streamingSigned, .streamingUnsignedTrailer: return req.headers["x-amz-decoded-content-length"].flatMap { Int($0) }
        case .unsigned, .signedHex: return req.headers["content-length"].flatMap { Int($0) }
        }
    }

    func uploadPart(_ req: S3Request, bucket: String, key: String, uploadId: String, partNumber: String, body: RequestBody, log: RequestLog) async throws -> Response {
        let n = try Self.partNumber(partNumber)
        let declared = Self.declaredLength(req)
        let assemblies = store.assemblies
        let (dir, slot) = try await FilePool.run { () throws -> (String, Int?) in
            let dir = try FSStore.uploadDir(bucket: bucket, key: key, uploadId: uploadId)
            return (dir, try assemblies.reserve(dir: dir, number: n, declared: declared))
        }
        guard let slot, let declared else { return try await stagePart(req, dir: dir, number: n, body: body, log: log) }
        defer { assemblies.release(dir: dir, number: n) }
        let file = try await PendingFile.inPlace(path: dir + "/" + PartRecord.assemblyName, offset: slot, limit: declared,
                                                 writes: assemblies.writes(dir: dir))
        do {
            let decoder = try await Self.receive(req, body: body, into: file)
            let etag = Hex.encode(decoder.md5Digest)
            try await file.sync()
            let record = PartRecord(file: PartRecord.assemblyName, offset: slot, length: decoder.decodedBytes, etag: etag)
            try await FilePool.run {
                // Aborted meanwhile?
                guard statPath(dir) != nil else { throw S3Error.noSuchUpload }
                try record.commit(dir: dir, number: n)
            }
            log.bytes = decoder.decodedBytes
            return Reply.empty(headers: [("ETag", "\"\(etag)\"")])
        } catch {
            await file.abort()
            throw error
        }
    }

    /// A part upload written to its own file, which becomes the part's data file.
    private func stagePart(_ req: S3Request, dir: String, number n: Int, body: RequestBody, log: RequestLog) async throws -> Response {
        let file = try await PendingFile.create(dir: dir)
        do {
            let decoder = try await Self.receive(req, body: body, into: file)
            let etag = Hex.encode(decoder.md5Digest)
            try await commitStaged(file, dir: dir, number: n, etag: etag, length: decoder.decodedBytes)
            log.bytes = decoder.decodedBytes
            return Reply.empty(headers: [("ETag", "\"\(etag)\"")])
        } catch {
            await file.abort()
            throw error
        }
    }

    /// Renames a received part file to a `data-*` name and records it as part `n`.
    private func commitStaged(_ file: PendingFile, dir: String, number n: Int, etag: String, length: Int) async throws {
        // Aborted meanwhile?
        guard try await FilePool.run({ statPath(dir) != nil }) else { throw S3Error.noSuchUpload }
        let name = PartRecord.dataPrefix + UUID().uuidString.lowercased()
        try await file.commit(to: dir + "/" + name, etag: etag)
        try await FilePool.run {
            do {
                guard statPath(dir) != nil else { throw S3Error.noSuchUpload }
                try PartRecord(file: name, offset: 0, length: length, etag: etag).commit(dir: dir, number: n)
            } catch {
                unlink(dir + "/" + name)
                throw error
            }
        }
    }

    /// `x-amz-copy-source-range: bytes=first-last` → (offset, length). Malformed or inverted ranges are
    /// `InvalidArgument`, ranges past the source's end `InvalidRange`, as S3 answers.
    static func parseCopyRange(_ h: String, size: Int) throws -> (Int, Int) {
        let bad = S3Error.invalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
        guard h.hasPrefix("bytes=") else { throw bad }
        let spec = h.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        guard spec.count == 2, let a = Int(spec[0]), let b = Int(spec[1]), a >= 0, b >= a,
              spec[0].allSatisfy(\.isNumber), spec[1].allSatisfy(\.isNumber) else { throw bad }
        guard b < size else {
            throw S3Error("InvalidRange", 416, "The requested range is not satisfiable")
        }
        return (a, b - a + 1)
    }

    /// UploadPartCopy: a part made of (a range of) an existing object.
    func uploadPartCopy(_ req: S3Request, bucket: String, key: String, uploadId: String, partNumber: String, src: String) async throws -> Response {
        let n = try Self.partNumber(partNumber)
        let headers = req.headers
        let (dir, source) = try await FilePool.run {
            let dir = try FSStore.uploadDir(bucket: bucket, key: key, uploadId: uploadId)
            let source = try self.copySource(src)
            try self.checkCopySourceConditions(headers, etag: etagFor(path: source.path, info: source.info), info: source.info)
            return (dir, source)
        }
        var (offset, length) = (0, source.info.size)
        if let r = headers["x-amz-copy-source-range"] { (offset, length) = try Self.parseCopyRange(r, size: source.info.size) }
        let file = try await PendingFile.create(dir: dir)
        do {
            try await copyRange(from: source.path, offset: offset, length: length, into: file)
            let etag = Hex.encode(try await file.drain())
            try await commitStaged(file, dir: dir, number: n, etag: etag, length: length)
            let mtime = try await FilePool.run { statPath(dir + "/" + PartRecord.recordName(n))?.mtime ?? Date() }
            return Reply.xml(xmlHeader + "<CopyPartResult xmlns=\"\(s3NS)\"><LastModified>\(XML.date(mtime))</LastModified><ETag>&quot;\(etag)&quot;</ETag></CopyPartResult>")
        } catch {
            await file.abort()
            throw error
        }
    }

    /// Copies `length` bytes at `offset` of a file into a pending file (which hashes them).
    func copyRange(from path: String, offset: Int, length: Int, into file: PendingFile) async throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw S3Error.noSuchKey }
        let source = OpenFile(fd)
        var off = offset, remaining = length
        while remaining > 0 {
            let (at, want) = (off, min(FilePool.bufferSize, remaining))
            let chunk = try await FilePool.run { try readChunk(source.fd, at: at, length: want, path: path) }
            try await file.write(chunk)
            off += chunk.readableBytes
            remaining -= chunk.readableBytes
        }
    }

    func listParts(_ bucket: String, key: String, uploadId: String, query: QueryItems) throws -> Response {
        let dir = try FSStore.uploadDir(bucket: bucket, key: key, uploadId: uploadId)
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
        let dir = try await FilePool.run { try FSStore.uploadDir(bucket: bucket, key: key, uploadId: uploadId) }
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
        let condition = WriteCondition(headers: req.headers)
        let wantedParts = wanted
        let (etag, meta, target, parts) = try await FilePool.run {
            let have = Dictionary(FSStore.listParts(dir: dir).map { ($0.number, $0) }, uniquingKeysWith: { a, _ in a })
            var md5s = [UInt8]()
            for (n, etag) in wantedParts { guard let p = have[n], p.etag == etag else { throw S3Error.invalidPart } }
            for (i, (n, etag)) in wantedParts.enumerated() {
                let p = have[n]!
                if i < wantedParts.count - 1 && p.size < 5 << 20 { throw S3Error.entityTooSmall }
                md5s += Hex.decode(etag) ?? []
            }
            let etag = Hex.encode(Insecure.MD5.hash(data: md5s)) + "-\(wantedParts.count)"
            try condition.check(path: path)
            var meta = FSStore.uploadMetadata(dir: dir)
            meta.setParts(wantedParts.map { have[$0.0]!.size })
            return (etag, meta, try KeyLayout.prepareWrite(bucket: bucket, key: key, metadata: self.store.metadata), have)
        }
        let done = try await completeInPlace(dir: dir, wanted: wanted.map(\.0), parts: parts, target: target, etag: etag, meta: meta, condition: condition)
        if !done {
            let file = try await PendingFile.create(dir: parentPath(target))
            do {
                for (n, _) in wanted {
                    let p = parts[n]!
                    try await file.append(contentsOf: p.path, offset: p.offset, length: p.size)
                }
                try await file.commit(to: target, etag: etag, meta: meta, store: store.metadata, condition: condition)
            } catch {
                await file.abort()
                throw error
            }
        }
        try await FilePool.run { removeTree(dir) }
        store.assemblies.forget(dir: dir)
        return Reply.xml(xmlHeader + "<CompleteMultipartUploadResult xmlns=\"\(s3NS)\"><Location>/\(XML.escape(bucketName))/\(XML.escape(key))</Location><Bucket>\(XML.escape(bucketName))</Bucket><Key>\(XML.escape(key))</Key><ETag>&quot;\(etag)&quot;</ETag></CompleteMultipartUploadResult>")
    }

    /// Completes by moving the assembly into place when parts 1...N-1 lie in it at their slots and no record
    /// points into it past part N (truncating it then loses no part): copies part N to its slot unless it is
    /// there, truncates, and commits the assembly as the object. Returns false, having changed nothing the
    /// records point to, when the copying path must be taken (other layout, in-place writes running, the
    /// object's folder on another file system).
    private func completeInPlace(dir: String, wanted: [Int], parts: [Int: FSStore.PartInfo], target: String, etag: String,
                                 meta: ObjectMetadata, condition: WriteCondition) async throws -> Bool {
        let assemblies = store.assemblies
        let assembly = dir + "/" + PartRecord.assemblyName
        guard let stride = assemblies.stride(dir: dir), wanted == Array(1...wanted.count) else { return false }
        let count = wanted.count
        for n in 1..<count {
            guard let p = parts[n], p.path == assembly, p.offset == (n - 1) * stride, p.size == stride else { return false }
        }
        guard !parts.values.contains(where: { $0.path == assembly && $0.number > count }) else { return false }
        guard assemblies.beginCompleting(dir: dir) else { return false }
        let last = parts[count]!
        let lastSlot = (count - 1) * stride
        let store = self.store.metadata
        do {
            let moved = try await FilePool.run { () throws -> Bool in
                guard let a = statPath(assembly), let t = statPath(parentPath(target)), Self.device(assembly) == Self.device(parentPath(target)),
                      a.isFile, t.isDir else { return false }
                let fd = open(assembly, O_RDWR | O_CLOEXEC)
                guard fd >= 0 else { throw S3Error("InternalError", 500, "open \(assembly): \(errnoText())") }
                let file = OpenFile(fd)
                if !(last.path == assembly && last.offset == lastSlot) {
                    guard lseek(file.fd, off_t(lastSlot), SEEK_SET) == off_t(lastSlot) else {
                        throw S3Error("InternalError", 500, "seek \(assembly): \(errnoText())")
                    }
                    try appendFile(from: last.path, offset: last.offset, length: last.size, to: file.fd)
                }
                guard ftruncate(file.fd, off_t(lastSlot + last.size)) == 0 else {
                    throw S3Error("InternalError", 500, "truncate \(assembly): \(errnoText())")
                }
                try PendingFile.finish(file.fd, tmpPath: assembly, to: target, etag: etag, meta: meta, store: store, condition: condition)
                fsyncDir(parentPath(target))
                return true
            }
            // Once moved the upload stays closed to in-place writes until its folder is gone.
            if !moved { assemblies.endCompleting(dir: dir) }
            return moved
        } catch {
            assemblies.endCompleting(dir: dir)
            throw error
        }
    }

    /// The device a path is on (0 when it cannot be read).
    private static func device(_ path: String) -> UInt64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return UInt64(st.st_dev)
    }
}
