import ArtifactStorage
import Crypto
import Foundation
import S3Client

func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

func rfc3339(_ date: Date = Date()) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}

/// One exported index, as recorded in the snapshot's manifest.json.
public struct ExportedIndex: @unchecked Sendable {
    public var name: String
    public var key: String
    public var settings: [String: Any]
    public var mappings: [String: Any]
    public var docs: Int64
    public var size: Int64
    public var sha256: String
    /// In a chunked repository: the export's chunks (nothing is stored at ``key``).
    public var chunks: ChunkRecord?

    var json: [String: Any] {
        var out: [String: Any] = ["name": name, "key": key, "settings": settings, "mappings": mappings, "docs": docs, "size": size, "sha256": sha256]
        if let object = chunks?.jsonObject { out["chunks"] = object }
        return out
    }

    init(name: String, key: String, settings: [String: Any], mappings: [String: Any], docs: Int64, size: Int64, sha256: String,
         chunks: ChunkRecord? = nil) {
        self.name = name; self.key = key; self.settings = settings; self.mappings = mappings
        self.docs = docs; self.size = size; self.sha256 = sha256; self.chunks = chunks
    }

    init?(json: [String: Any]) {
        guard let name = json["name"] as? String, let key = json["key"] as? String, let sha = json["sha256"] as? String else { return nil }
        var chunks: ChunkRecord? = nil
        if let object = json["chunks"] {
            guard let record = ChunkRecord(jsonObject: object) else { return nil }
            chunks = record
        }
        self.init(
            name: name, key: key, settings: json["settings"] as? [String: Any] ?? [:], mappings: json["mappings"] as? [String: Any] ?? [:],
            docs: (json["docs"] as? NSNumber)?.int64Value ?? 0, size: (json["size"] as? NSNumber)?.int64Value ?? 0, sha256: sha,
            chunks: chunks)
    }
}

/// Where the bytes of an export go and come from: the backup repository (through the gateway; plain or
/// chunked) for backups, a local folder for the stack's own search save. Blocking; used from the
/// operation's own thread.
public protocol ExportStore: Sendable {
    /// Streams an object: `produce` calls `write` with chunks; the object appears only if it returns
    /// normally. Returns its chunks when the store keeps it as chunks (they belong in the manifest).
    func put(_ name: String, produce: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> ChunkRecord?
    /// Streams an object back (`chunks`: what ``put(_:produce:)`` returned for it).
    func get(_ name: String, chunks: ChunkRecord?, into sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws
    func putSmall(_ name: String, _ bytes: [UInt8]) throws
    func getSmall(_ name: String) throws -> [UInt8]?
    /// Makes everything ``put(_:produce:)`` stored durable before the manifest names it.
    func commit() throws
}

/// An export in the backup repository: each index's NDJSON as an object of its own (plain) or as chunks
/// (chunked), `manifest.json` always as an object. One write session for all the indices of an export.
public final class S3ExportStore: ExportStore, @unchecked Sendable {
    public let artifacts: ArtifactRepository
    public var s3: S3Client { artifacts.s3 }
    public var bucket: String { artifacts.bucket }
    public let prefix: String
    public let partSize: Int
    private let lock = NSLock()
    private var session: ArtifactWriteSession?
    private var reader: ArtifactReader?

    public init(artifacts: ArtifactRepository, prefix: String, partSize: Int = 8 << 20) {
        self.artifacts = artifacts; self.prefix = prefix; self.partSize = partSize
    }

    deinit { session?.close() }

    public func put(_ name: String, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> ChunkRecord? {
        let current: ArtifactWriteSession = try lock.withLock {
            if let existing = self.session { return existing }
            let made = try artifacts.writeSession(purpose: "search export \(prefix)")
            self.session = made
            return made
        }
        let sink = try current.sink(key: prefix + name, compressionLevel: nil, partSize: partSize)
        do {
            try produce { try sink.write($0) }
            return try sink.finish().chunks
        } catch {
            sink.abort()
            throw error
        }
    }

    public func get(_ name: String, chunks: ChunkRecord?, into sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let reader = lock.withLock {
            if let existing = self.reader { return existing }
            let made = artifacts.reader()
            self.reader = made
            return made
        }
        try reader.read(key: prefix + name, chunks: chunks, into: sink)
    }

    public func putSmall(_ name: String, _ bytes: [UInt8]) throws {
        try s3.putObjectSync(bucket: bucket, key: prefix + name, bytes: bytes, contentType: "application/json")
    }

    public func getSmall(_ name: String) throws -> [UInt8]? {
        do { return try s3.getObjectSync(bucket: bucket, key: prefix + name) } catch let e as S3Error where e.isNotFound { return nil }
    }

    public func commit() throws {
        try lock.withLock { session }?.commit()
    }

    /// Ends the write session (its lock on a chunked repository) once the manifest is written.
    public func close() {
        lock.withLock { session }?.close()
    }
}

/// A local folder: each object is written to `<name>.tmp` then renamed (fsync'd), so a crash mid-save
/// keeps the previous file. Used to save the stack's own search engine (`save`/`seed`).
public struct DirectoryExportStore: ExportStore {
    public var directory: String

    public init(directory: String) { self.directory = directory }

    public func put(_ name: String, produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> ChunkRecord? {
        let final = directory + "/" + name, temp = final + ".tmp"
        _ = FileManager.default.createFile(atPath: temp, contents: nil)
        guard let h = FileHandle(forWritingAtPath: temp) else { throw SearchError(status: 0, message: "cannot write \(temp)") }
        do {
            try produce { chunk in try h.write(contentsOf: Data(chunk)) }
            try h.synchronize()
            try h.close()
            if rename(temp, final) != 0 { throw SearchError(status: 0, message: "cannot rename \(temp): \(String(cString: strerror(errno)))") }
            return nil
        } catch {
            try? h.close()
            unlink(temp)
            throw error
        }
    }

    public func get(_ name: String, chunks: ChunkRecord?, into sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let h = FileHandle(forReadingAtPath: directory + "/" + name) else { throw SearchError(status: 404, message: "\(directory)/\(name) is missing") }
        defer { try? h.close() }
        while let d = try h.read(upToCount: 1 << 20), !d.isEmpty { try d.withUnsafeBytes { try sink($0) } }
    }

    public func putSmall(_ name: String, _ bytes: [UInt8]) throws {
        _ = try put(name) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    public func commit() throws {}

    public func getSmall(_ name: String) throws -> [UInt8]? {
        FileManager.default.contents(atPath: directory + "/" + name).map(Array.init)
    }
}

/// Progress callbacks from export/import (index, docs done); throwing (a `CancellationError`) stops the
/// work at that point, with nothing completed for the index in progress.
public typealias ExportProgress = @Sendable (_ index: String, _ docsDone: Int64, _ docsTotal: Int64) throws -> Void

/// Export mode: every document of each index, paged with `search_after` on `_id` (never all in memory),
/// written as bulk-format NDJSON (`{"index":{"_index":…,"_id":…}}` then the source), plus manifest.json.
public struct Exporter: Sendable {
    public var engine: SearchEngine
    public var pageSize: Int = 1000
    public var bulkBytes: Int = 4 << 20

    public init(engine: SearchEngine) { self.engine = engine }

    public func export(indices: [String], to store: ExportStore, meta: [String: Any], progress: ExportProgress? = nil) throws -> [ExportedIndex] {
        var out: [ExportedIndex] = []
        for index in indices {
            out.append(try exportIndex(index, to: store, progress: progress))
        }
        // The indices' chunks are indexed before the manifest names them.
        try store.commit()
        var manifest = meta
        manifest["format_version"] = 1
        manifest["created_at"] = rfc3339()
        manifest["indices"] = out.map(\.json)
        try store.putSmall("manifest.json", Array(try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])))
        return out
    }

    public func exportIndex(_ index: String, to store: ExportStore, progress: ExportProgress? = nil) throws -> ExportedIndex {
        let (settings, mappings) = try engine.definition(index)
        let total = try engine.count(index)
        var hasher = SHA256()
        var size: Int64 = 0
        var docs: Int64 = 0
        let name = index + ".ndjson"
        let chunks = try store.put(name) { write in
            var after: Any? = nil
            var line = [UInt8]()
            let indexJSON = String(decoding: try JSONSerialization.data(withJSONObject: index, options: [.fragmentsAllowed]), as: UTF8.self)
            while true {
                var query: [String: Any] = ["size": pageSize, "sort": [["_id": "asc"]], "query": ["match_all": [String: Any]()]]
                if let after { query["search_after"] = [after] }
                let r = try engine.json("POST", "/\(uriEncode(index))/_search", body: query) as? [String: Any]
                let hits = ((r?["hits"] as? [String: Any])?["hits"] as? [[String: Any]]) ?? []
                if hits.isEmpty { break }
                for hit in hits {
                    guard let id = hit["_id"] as? String else { continue }
                    let source = hit["_source"] ?? [String: Any]()
                    let idJSON = String(decoding: try JSONSerialization.data(withJSONObject: id, options: [.fragmentsAllowed]), as: UTF8.self)
                    line.removeAll(keepingCapacity: true)
                    line += Array("{\"index\":{\"_index\":\(indexJSON),\"_id\":\(idJSON)}}\n".utf8)
                    line += Array(try JSONSerialization.data(withJSONObject: source, options: [.withoutEscapingSlashes, .fragmentsAllowed]))
                    line.append(UInt8(ascii: "\n"))
                    try line.withUnsafeBytes { b in
                        hasher.update(bufferPointer: b)
                        size += Int64(b.count)
                        try write(b)
                    }
                    docs += 1
                }
                after = (hits.last?["sort"] as? [Any])?.first ?? hits.last?["_id"]
                try progress?(index, docs, total)
                if hits.count < pageSize { break }
            }
        }
        return ExportedIndex(
            name: index, key: name, settings: settings, mappings: mappings, docs: docs, size: size, sha256: hex(hasher.finalize()), chunks: chunks)
    }

    public func readManifest(from store: ExportStore) throws -> (meta: [String: Any], indices: [ExportedIndex])? {
        guard let bytes = try store.getSmall("manifest.json") else { return nil }
        guard let obj = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw SearchError(status: 0, message: "manifest.json is not a JSON object")
        }
        let indices = (obj["indices"] as? [[String: Any]] ?? []).compactMap(ExportedIndex.init(json:))
        return (obj, indices)
    }

    /// Streams the object through sha256 and a line counter; throws unless size, sha256 and document count
    /// all match the manifest. Nothing is written to the engine.
    public func verify(_ index: ExportedIndex, in store: ExportStore) throws {
        var hasher = SHA256()
        var size: Int64 = 0
        var lines: Int64 = 0
        try store.get(index.key, chunks: index.chunks) { chunk in
            hasher.update(bufferPointer: chunk)
            size += Int64(chunk.count)
            for b in chunk where b == UInt8(ascii: "\n") { lines += 1 }
        }
        let digest = hex(hasher.finalize())
        guard size == index.size, digest == index.sha256, lines == index.docs * 2 else {
            throw SearchError(status: 0, message: "\(index.key) does not match the manifest (size \(size) vs \(index.size), sha256 \(digest) vs \(index.sha256), \(lines / 2) vs \(index.docs) documents); refusing to restore")
        }
    }

    /// Creates the index (settings + mappings); `replace` deletes an existing one first.
    public func create(_ index: ExportedIndex, replace: Bool) throws {
        if try engine.indexExists(index.name) {
            guard replace else { throw SearchError(status: 409, message: "index \(index.name) already exists") }
            try engine.json("DELETE", "/" + uriEncode(index.name))
        }
        var body: [String: Any] = [:]
        if !index.settings.isEmpty { body["settings"] = index.settings }
        if !index.mappings.isEmpty { body["mappings"] = index.mappings }
        try engine.json("PUT", "/" + uriEncode(index.name), body: body)
    }

    /// Bulk-loads the object in batches (whole action/source pairs, about `bulkBytes` each), re-checking the
    /// sha256 on the way, then refreshes and checks the document count.
    public func load(_ index: ExportedIndex, from store: ExportStore, progress: ExportProgress? = nil) throws {
        var hasher = SHA256()
        var batch = [UInt8]()
        batch.reserveCapacity(bulkBytes + (1 << 20))
        var pending = [UInt8]()
        var linesInBatch = 0
        var docs: Int64 = 0
        let engine = self.engine
        let name = index.name
        func flush() throws {
            if batch.isEmpty { return }
            let (status, body) = try engine.raw("POST", "/_bulk", body: batch, contentType: "application/x-ndjson")
            guard (200..<300).contains(status) else {
                throw SearchError(status: status, message: "bulk load of \(name): \(SearchEngine.reason(body) ?? String(decoding: body.prefix(300), as: UTF8.self))")
            }
            // `"errors":false` sits near the start of a bulk answer: only a failed batch is parsed whole (a
            // big answer parsed through Foundation costs far more memory than the batch itself).
            let head = String(decoding: body.prefix(256), as: UTF8.self).replacingOccurrences(of: " ", with: "")
            if !head.contains("\"errors\":false"), let obj = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], (obj["errors"] as? Bool) == true {
                let first = (obj["items"] as? [[String: Any]])?.lazy.compactMap { ($0["index"] as? [String: Any])?["error"] }.first
                throw SearchError(status: status, message: "bulk load of \(name) had errors: \(first.map { "\($0)" } ?? "?")")
            }
            docs += Int64(linesInBatch / 2)
            batch.removeAll(keepingCapacity: true)
            linesInBatch = 0
            try progress?(name, docs, index.docs)
        }
        try store.get(index.key, chunks: index.chunks) { chunk in
            hasher.update(bufferPointer: chunk)
            var start = 0
            while start < chunk.count {
                guard let nl = chunk[start...].firstIndex(of: UInt8(ascii: "\n")) else {
                    pending += chunk[start...]
                    break
                }
                if !pending.isEmpty { batch += pending; pending.removeAll(keepingCapacity: true) }
                batch += chunk[start...nl]
                start = nl + 1
                linesInBatch += 1
                if linesInBatch % 2 == 0 && batch.count >= bulkBytes { try flush() }
            }
        }
        guard pending.isEmpty, linesInBatch % 2 == 0 else {
            throw SearchError(status: 0, message: "\(index.key) ends inside a document (truncated)")
        }
        let digest = hex(hasher.finalize())
        guard digest == index.sha256 else {
            throw SearchError(status: 0, message: "\(index.key) changed while loading (sha256 \(digest) vs \(index.sha256))")
        }
        try flush()
        try engine.json("POST", "/\(uriEncode(name))/_refresh", allow: [404, 405])
        let count = try engine.count(name)
        guard count == index.docs else {
            throw SearchError(status: 0, message: "index \(name) has \(count) documents after restore, the export has \(index.docs)")
        }
    }
}
