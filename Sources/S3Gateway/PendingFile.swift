import CAutomateShims
import Foundation
import NIOCore
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Writes an object to a hidden temp file beside its final name; `commit` fsyncs and renames it into place,
/// `abort` removes it. A crash leaves at most a hidden `.automate-tmp-*` file that listing skips.
///
/// The received buffers are not copied: they are gathered into batches of about 1 MiB, and each batch is
/// hashed (MD5, in order, chained after the previous batch's hash) and written (`pwrite` at its offset, chained
/// after the previous batch's write) by jobs on the file pool, while the next batch fills: the hash of one
/// batch and the write of another run at once. What a file holds (its filling batch and the batches in
/// flight) is counted against the gateway-wide budget (`FilePool.writeBuffers`, in units of
/// `FilePool.bufferSize`): a file takes its first unit waiting for it, further ones only if the budget has them
/// right now (at most `unitsPerFile`), and otherwise waits for its oldest job rather than for more memory, so
/// the body is never buffered whole and a slow disk slows the socket down. Small received pieces are copied
/// into a coalescing buffer so that a trickling client cannot pin many mostly empty receive buffers.
///
/// `inPlace` instead writes into a slot of an existing file (a multipart upload's assembly): bytes go at the
/// slot's offset, never past its end, and `sync` replaces `commit`; nothing is removed on abort. Its writes
/// queue on the assembly's ``JobChain`` with those of the upload's other parts.
/// Used by one request task at a time.
final class PendingFile {
    let dir: String
    /// The temp file's path; nil when writing in place.
    let tmpPath: String?
    let file: OpenFile
    var fd: Int32 { file.fd }
    /// A batch is handed to a job once it holds this many bytes.
    static let batchSize = 1 << 20
    /// Budget units one file may hold: a filling batch and two in flight.
    static let unitsPerFile = 3 * batchSize / FilePool.bufferSize
    /// Pieces smaller than this are copied into the coalescing buffer instead of being kept.
    static let smallPiece = 64 << 10
    private var batch: [ByteBuffer] = []
    private var batchBytes = 0
    /// Whether the batch's last buffer is a coalescing buffer (ours, with room for more small pieces).
    private var coalescing = false
    /// Bytes of the filling batch and of the batches in flight.
    private var heldBytes = 0
    private var permits = 0
    private var inFlight: [(bytes: Int, job: Task<Void, any Error>)] = []
    /// The batches' MD5 jobs, in order.
    private let hashes = JobChain()
    /// The file's writes, one at a time (shared by the part uploads writing into one assembly).
    private let writes: JobChain
    private let md5 = LaneMD5()
    private var offset = 0
    private let end: Int
    private var done = false

    private init(dir: String, tmpPath: String?, file: OpenFile, offset: Int = 0, limit: Int = Int.max, writes: JobChain = JobChain()) {
        self.dir = dir; self.tmpPath = tmpPath; self.file = file; self.writes = writes
        self.offset = offset
        end = limit == Int.max ? Int.max : offset + limit
    }

    /// Writes at most `limit` bytes into `path` (created if missing, sparse until filled) from `offset` on, its
    /// writes queued on `writes` with those of the other files writing into `path`.
    static func inPlace(path: String, offset: Int, limit: Int, writes: JobChain) async throws -> PendingFile {
        let fd = try await FilePool.run { () throws -> Int32 in
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw S3Error("InternalError", 500, "cannot open \(path) for writing: \(errnoText())") }
            return fd
        }
        return PendingFile(dir: parentPath(path), tmpPath: nil, file: OpenFile(fd), offset: offset, limit: limit, writes: writes)
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
        let n = buf.readableBytes
        guard n > 0 else { return }
        // An in-place slot takes no more than it was reserved for (the next slot may hold a committed part).
        guard n <= end - (offset + batchBytes) else { throw S3Error.incompleteBody }
        try await makeRoom(for: n)
        if n < Self.smallPiece {
            // Appended to the last batch buffer when it is a coalescing buffer with room, else to a new one.
            if coalescing, var last = batch.popLast() {
                if last.writableBytes >= n {
                    last.writeImmutableBuffer(buf)
                    batch.append(last)
                } else {
                    batch.append(last)
                    batch.append(Self.coalescingBuffer(with: buf))
                }
            } else {
                batch.append(Self.coalescingBuffer(with: buf))
            }
            coalescing = true
        } else {
            batch.append(buf)
            coalescing = false
        }
        batchBytes += n
        heldBytes += n
        if batchBytes >= Self.batchSize { submit() }
    }

    /// A new coalescing buffer holding `piece`. 256 KiB: at glibc's mmap threshold as the gateway tunes it, so
    /// only the pages written to are resident, and the memory goes back to the system once the batch is written.
    private static func coalescingBuffer(with piece: ByteBuffer) -> ByteBuffer {
        var c = ByteBufferAllocator().buffer(capacity: 256 << 10)
        c.writeImmutableBuffer(piece)
        return c
    }

    /// Makes the budget cover `n` more held bytes: the first unit (waiting for it), further units if the budget
    /// has them right now, else by waiting for this file's oldest job. Never waits for the budget while holding
    /// part of it (two files could wait on each other); a piece larger than what the file may hold is taken
    /// anyway once nothing else is held.
    private func makeRoom(for n: Int) async throws {
        while heldBytes + n > permits * FilePool.bufferSize {
            if permits == 0 {
                await FilePool.writeBuffers.acquire()
                permits = 1
            } else if permits < Self.unitsPerFile, FilePool.writeBuffers.tryAcquire() {
                permits += 1
            } else if !inFlight.isEmpty {
                try await retireOldest()
            } else if batchBytes > 0 {
                submit()
            } else {
                return
            }
        }
    }

    private func retireOldest() async throws {
        let f = inFlight.removeFirst()
        heldBytes -= f.bytes
        try await f.job.value
    }

    /// Hands the filling batch to a job that hashes it (after the previous job, so the MD5 sees the bytes in
    /// order) and writes it at its offset.
    private func submit() {
        guard batchBytes > 0 else { return }
        let (bufs, off, bytes) = (batch, offset, batchBytes)
        batch = []
        batchBytes = 0
        coalescing = false
        offset += bytes
        let (md5, file) = (self.md5, self.file)
        // Two chains: the MD5 must see the batches in order, and one write at a time per file keeps the
        // threads from queueing on the file's lock in the kernel; hashing one batch and writing another run at
        // once. A failed job fails the file (drain reports it); the next ones still run so that none is left
        // behind.
        let hash = hashes.append { try await md5.update(bufs) }
        let write = writes.append { try await FilePool.run { try PendingFile.pwriteAll(file.fd, bufs, at: off) } }
        let job = Task {
            let (hashed, written) = (await hash.result, await write.result)
            try hashed.get()
            try written.get()
        }
        inFlight.append((bytes, job))
    }

    static func pwriteAll(_ fd: Int32, _ bufs: [ByteBuffer], at offset: Int) throws {
        var at = offset
        for buf in bufs {
            try buf.withUnsafeReadableBytes { p in
                var done = 0
                while done < p.count {
                    let r = pwrite(fd, p.baseAddress! + done, p.count - done, off_t(at + done))
                    if r < 0 {
                        if errno == EINTR { continue }
                        throw S3Error("InternalError", 500, "write failed: \(errnoText())")
                    }
                    done += r
                }
            }
            at += buf.readableBytes
        }
        // Start writeback of every finished 16 MiB stretch so the final fsync has little left to do.
        let window = 16 << 20
        if at / window != offset / window {
            _ = automate_sync_file_range_write(fd, Int64((at / window - 1) * window), Int64(window))
        }
    }

    /// Waits for every job; returns the MD5 of everything written. Gives the budget back.
    func drain() async throws -> [UInt8] {
        submit()
        var firstError: (any Error)?
        while !inFlight.isEmpty {
            do { try await retireOldest() } catch { firstError = firstError ?? error }
        }
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
    ///
    /// A large object it replaces is removed afterwards, on the file pool: renaming over a file frees its
    /// blocks inside `rename`, which took 0.6 s for 1 GiB on ext4 here, under the key's commit lock and before
    /// the client hears back. The old file gets a hidden second name first (`.automate-tmp-replaced-*`), so the
    /// rename only drops a link; that name is unlinked once the new object is in place (a crash in between
    /// leaves it behind, as it leaves an upload's temp file: listing skips both).
    static func finish(_ fd: Int32, tmpPath: String, to finalPath: String, etag: String, meta: ObjectMetadata,
                               store: MetadataStore?, condition: WriteCondition) throws {
        var st = stat()
        fstat(fd, &st)
        let info = FileInfo(st)
        storeETag(fd: fd, etag: etag, info: info)
        let attachment = try store?.attach(meta, fd: fd, info: info) ?? .notNeeded
        guard fsync(fd) == 0 else { throw S3Error("InternalError", 500, "fsync failed: \(errnoText())") }
        try CommitLock.withLock(KeyLayout.lockName(finalPath)) {
            // A concurrent write or delete of another key may have moved this one into or out of its folder.
            let finalPath = KeyLayout.relocated(finalPath)
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
            } else {
                let replaced = displace(finalPath)
                guard rename(tmpPath, finalPath) == 0 else {
                    let e = errno
                    if let replaced { unlink(replaced) }
                    if e == EISDIR || e == ENOTEMPTY || e == EEXIST {
                        throw S3Error("InvalidRequest", 409, "A folder exists with this key's name.")
                    }
                    throw S3Error("InternalError", 500, "rename failed: \(String(cString: strerror(e)))")
                }
                if let replaced { FilePool.pool.submit { _ in unlink(replaced) } }
            }
        }
    }

    /// Objects from this size on are removed after they are replaced rather than by the rename (``finish``).
    static let displaceFrom: off_t = 16 << 20

    /// Gives the regular file at `path`, when it is one of at least ``displaceFrom`` bytes with no other name, a
    /// hidden second name beside it; returns that name (nil: nothing to do, or the link failed).
    private static func displace(_ path: String) -> String? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 1, st.st_size >= displaceFrom else { return nil }
        let name = parentPath(path) + "/" + reservedPrefix + "tmp-replaced-" + UUID().uuidString.lowercased()
        return link(path, name) == 0 ? name : nil
    }

    /// Waits for running jobs, then removes the temp file.
    func abort() async {
        guard !done else { return }
        done = true
        batch = []
        batchBytes = 0
        _ = try? await drain()
        guard let tmpPath = self.tmpPath else { return }
        _ = try? await FilePool.run { unlink(tmpPath) }
    }
}
