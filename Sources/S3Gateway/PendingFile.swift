import CCurl
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Writes an object to a hidden temp file beside its final name; `commit` fsyncs and renames it into place,
/// `abort` removes it. A crash leaves at most a hidden `.automate-tmp-*` file that listing skips.
///
/// Bytes are gathered in 256 KiB buffers taken from the gateway-wide budget (`FilePool.writeBuffers`). A
/// full buffer is written (`pwrite` at its offset) and hashed (MD5, in order) by jobs on the file pool while
/// the next one fills; a file holds at most 3 buffers, and waits for its oldest job rather than for more
/// memory, so the body is never buffered whole and a slow disk slows the socket down.
///
/// `inPlace` instead writes into a slot of an existing file (a multipart upload's assembly): bytes go at the
/// slot's offset, never past its end, and `sync` replaces `commit`; nothing is removed on abort.
/// Used by one request task at a time.
final class PendingFile {
    let dir: String
    /// The temp file's path; nil when writing in place.
    let tmpPath: String?
    let file: OpenFile
    var fd: Int32 { file.fd }
    private static let buffersPerFile = 3
    private var staging: ByteBuffer?
    private var spare: [ByteBuffer] = []
    private var permits = 0
    private var inFlight: [(buffer: ByteBuffer, hash: Task<Void, Never>, write: Task<Void, any Error>)] = []
    private var lastHash: Task<Void, Never>?
    private let md5 = RunningMD5()
    private var offset = 0
    private let end: Int
    private var done = false

    private init(dir: String, tmpPath: String?, file: OpenFile, offset: Int = 0, limit: Int = Int.max) {
        self.dir = dir; self.tmpPath = tmpPath; self.file = file
        self.offset = offset
        end = limit == Int.max ? Int.max : offset + limit
    }

    /// Writes at most `limit` bytes into `path` (created if missing, sparse until filled) from `offset` on.
    static func inPlace(path: String, offset: Int, limit: Int) async throws -> PendingFile {
        let fd = try await FilePool.run { () throws -> Int32 in
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw S3Error("InternalError", 500, "cannot open \(path) for writing: \(errnoText())") }
            return fd
        }
        return PendingFile(dir: parentPath(path), tmpPath: nil, file: OpenFile(fd), offset: offset, limit: limit)
    }

    /// Creates the temp file in `dir` (remaking the folder if a concurrent delete pruned it).
    static func create(dir: String) async throws -> PendingFile {
        let (path, fd) = try await FilePool.run { () throws -> (String, Int32) in
            var attempt = 0
            while true {
                let path = dir + "/" + reservedPrefix + "tmp-" + UUID().uuidString.lowercased()
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                if fd >= 0 { return (path, fd) }
                if errno == ENOENT && attempt < 5 {
                    attempt += 1
                    try makeDirs(dir)
                    continue
                }
                throw S3Error("InternalError", 500, "cannot create temp file in \(dir): \(errnoText())")
            }
        }
        return PendingFile(dir: dir, tmpPath: path, file: OpenFile(fd))
    }

    deinit {
        if !done, let tmpPath {
            // Not committed nor aborted (a task cancelled in between): the jobs hold the descriptor open
            // until they finish; the name goes now.
            unlink(tmpPath)
        }
        for _ in 0..<permits { FilePool.writeBuffers.release() }
    }

    func write(_ buf: ByteBuffer) async throws {
        // An in-place slot takes no more than it was reserved for (the next slot may hold a committed part).
        let pending = offset + (staging?.readableBytes ?? 0)
        guard buf.readableBytes <= end - pending else { throw S3Error.incompleteBody }
        var src = buf
        while src.readableBytes > 0 {
            if staging == nil { staging = try await takeBuffer() }
            let n = min(src.readableBytes, FilePool.bufferSize - staging!.readableBytes)
            staging!.writeImmutableBuffer(src.readSlice(length: n)!)
            if staging!.readableBytes == FilePool.bufferSize { try await submit() }
        }
    }

    /// A free buffer: a spare one, the first from the budget (waiting for it), a further one if the budget
    /// has it right now, else this file's oldest buffer once its jobs are done.
    private func takeBuffer() async throws -> ByteBuffer {
        if let b = spare.popLast() { return b }
        if permits == 0 {
            await FilePool.writeBuffers.acquire()
            permits = 1
            return ByteBufferAllocator().buffer(capacity: FilePool.bufferSize)
        }
        if permits < Self.buffersPerFile, FilePool.writeBuffers.tryAcquire() {
            permits += 1
            return ByteBufferAllocator().buffer(capacity: FilePool.bufferSize)
        }
        guard !inFlight.isEmpty else { return ByteBufferAllocator().buffer(capacity: FilePool.bufferSize) }
        var b = try await retireOldest()
        b.clear()
        return b
    }

    private func retireOldest() async throws -> ByteBuffer {
        let f = inFlight.removeFirst()
        await f.hash.value
        try await f.write.value
        return f.buffer
    }

    /// Hands the staging buffer to a write job and a hash job (chained after the previous hash).
    private func submit() async throws {
        guard let buf = staging, buf.readableBytes > 0 else { return }
        staging = nil
        let off = offset
        offset += buf.readableBytes
        let (prev, md5, file) = (lastHash, self.md5, self.file)
        let hash = Task {
            await prev?.value
            _ = try? await FilePool.run { md5.update(buf) }
        }
        let write = Task {
            try await FilePool.run { try PendingFile.pwriteAll(file.fd, buf, at: off) }
        }
        lastHash = hash
        inFlight.append((buf, hash, write))
    }

    static func pwriteAll(_ fd: Int32, _ buf: ByteBuffer, at offset: Int) throws {
        try buf.withUnsafeReadableBytes { p in
            var done = 0
            while done < p.count {
                let r = pwrite(fd, p.baseAddress! + done, p.count - done, off_t(offset + done))
                if r < 0 {
                    if errno == EINTR { continue }
                    throw S3Error("InternalError", 500, "write failed: \(errnoText())")
                }
                done += r
            }
        }
        // Start writeback of every finished 16 MiB stretch so the final fsync has little left to do.
        let window = 16 << 20
        let end = offset + buf.readableBytes
        if end / window != offset / window {
            _ = automate_sync_file_range_write(fd, Int64((end / window - 1) * window), Int64(window))
        }
    }

    /// Waits for every write and hash job; returns the MD5 of everything written. Gives the buffers back.
    func drain() async throws -> [UInt8] {
        try await submit()
        var firstError: (any Error)?
        while !inFlight.isEmpty {
            do { _ = try await retireOldest() } catch { firstError = firstError ?? error }
        }
        spare.removeAll()
        for _ in 0..<permits { FilePool.writeBuffers.release() }
        permits = 0
        if let firstError { throw firstError }
        return md5.finalize()
    }

    /// Copies `length` bytes at `offset` of a file to the end of this one (`copy_file_range`, on the pool).
    /// Not mixed with `write`.
    func append(contentsOf path: String, offset: Int, length: Int) async throws {
        let file = self.file
        try await FilePool.run { try appendFile(from: path, offset: offset, length: length, to: file.fd) }
    }

    /// For an in-place write, after ``drain()`` gave its MD5: makes the written bytes durable (`fdatasync`).
    func sync() async throws {
        precondition(inFlight.isEmpty, "sync() before drain(): write jobs are still running")
        done = true
        let file = self.file
        try await FilePool.run {
            guard fdatasync(file.fd) == 0 else { throw S3Error("InternalError", 500, "fdatasync failed: \(errnoText())") }
        }
    }

    /// fsync, store the ETag and metadata, and move into place. `condition` is checked against the object in
    /// place under the path's commit lock, just before the rename (`If-None-Match: *` uses `link()`, which
    /// fails atomically when the name exists, even against another process).
    func commit(to finalPath: String, etag: String, meta: ObjectMetadata = ObjectMetadata(), store: MetadataStore? = nil,
                condition: WriteCondition = WriteCondition()) async throws {
        do {
            _ = try await drain()
        } catch {
            await abort()
            throw error
        }
        done = true
        guard let tmpPath = self.tmpPath else { throw S3Error("InternalError", 500, "an in-place write into \(dir) cannot be renamed") }
        let (file, dir) = (self.file, self.dir)
        try await FilePool.run {
            do {
                try PendingFile.finish(file.fd, tmpPath: tmpPath, to: finalPath, etag: etag, meta: meta, store: store, condition: condition)
            } catch {
                unlink(tmpPath)
                throw error
            }
            fsyncDir(dir)
        }
    }

    /// fsync `fd` (open on `tmpPath`), store its ETag and metadata, check `condition` and move it to `finalPath`.
    /// Leaves `tmpPath` in place when it throws.
    static func finish(_ fd: Int32, tmpPath: String, to finalPath: String, etag: String, meta: ObjectMetadata,
                               store: MetadataStore?, condition: WriteCondition) throws {
        var st = stat()
        fstat(fd, &st)
        let info = FileInfo(st)
        storeETag(fd: fd, etag: etag, info: info)
        let attachment = try store?.attach(meta, fd: fd, info: info) ?? .notNeeded
        guard fsync(fd) == 0 else { throw S3Error("InternalError", 500, "fsync failed: \(errnoText())") }
        try CommitLock.withLock(finalPath) {
            try condition.check(path: finalPath)
            if case .sideFile(let ino, let record) = attachment, let store {
                try store.writeSideFile(ino: ino, record: record, finalPath: finalPath)
            }
            if condition.ifNoneMatchAll {
                if link(tmpPath, finalPath) != 0 {
                    let e = errno
                    if e == EEXIST { throw S3Error.preconditionFailed }
                    throw S3Error("InternalError", 500, "link failed: \(String(cString: strerror(e)))")
                }
                unlink(tmpPath)
            } else if rename(tmpPath, finalPath) != 0 {
                let e = errno
                if e == EISDIR || e == ENOTEMPTY || e == EEXIST {
                    throw S3Error("InvalidRequest", 409, "A folder exists with this key's name.")
                }
                throw S3Error("InternalError", 500, "rename failed: \(String(cString: strerror(e)))")
            }
        }
    }

    /// Waits for running jobs, then removes the temp file.
    func abort() async {
        guard !done else { return }
        done = true
        staging = nil
        _ = try? await drain()
        guard let tmpPath = self.tmpPath else { return }
        _ = try? await FilePool.run { unlink(tmpPath) }
    }
}
