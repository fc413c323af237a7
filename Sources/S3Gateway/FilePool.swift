import Foundation
import NIOCore
import NIOPosix
import S3Client
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Blocking file work (open, read, write, fsync, rename, hashing) runs here, on a bounded pool of threads,
/// never on Swift's cooperative executor that serves the connections.
enum FilePool {
    static let pool: NIOThreadPool = {
        let p = NIOThreadPool(numberOfThreads: 8)
        p.start()
        return p
    }()

    /// Runs `body` on the file pool and returns its result.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    /// Memory for received bytes waiting to be written, across the whole gateway: 32 units of 256 KiB (8 MiB).
    /// An upload waits (asynchronously, so its connection's socket stops being read) until one is free.
    static let writeBuffers = AsyncSemaphore(permits: 32)
    static let bufferSize = 256 << 10
}

/// A counting semaphore whose `acquire()` suspends the task instead of blocking its thread.
final class AsyncSemaphore: @unchecked Sendable {
    // `permits` and `waiters` are only touched with `lock` held.
    private let lock = NSLock()
    private var permits: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) { self.permits = permits }

    func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            if permits > 0 {
                permits -= 1
                lock.unlock()
                c.resume()
            } else {
                waiters.append(c)
                lock.unlock()
            }
        }
    }

    /// Takes a permit if one is free right now.
    func tryAcquire() -> Bool {
        lock.withLock {
            guard permits > 0 else { return false }
            permits -= 1
            return true
        }
    }

    func release() {
        lock.lock()
        if waiters.isEmpty {
            permits += 1
            lock.unlock()
        } else {
            let w = waiters.removeFirst()
            lock.unlock()
            w.resume()
        }
    }
}

/// An open file descriptor, closed when the last holder (the pending file, or an I/O job still running on
/// it) lets go, so no job ever writes to a closed or reused descriptor.
final class OpenFile: Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

/// Buffers reused from job to job on the file pool: a job fills them in place (the lock hands them over between
/// threads), the task that waited for the job sends copies of them, which keep their memory until sent (a
/// buffer still held so is replaced by a new one when the next job clears it).
final class BufferSlot: Sendable {
    let buffers = Mutex([ByteBuffer]())
}

/// Reads `length` bytes at `offset` (fewer only at the end of the file; none is an error: the file shrank).
func readChunk(_ fd: Int32, at offset: Int, length: Int, path: String) throws -> ByteBuffer {
    var buf = ByteBufferAllocator().buffer(capacity: length)
    try readChunk(fd, at: offset, length: length, into: &buf, path: path, allowShort: true)
    return buf
}

/// Reads `length` bytes at `offset` into `bufs`, `pieceSize` bytes per buffer (adding or dropping buffers as
/// needed, reusing their memory when nothing else holds it). Fewer bytes are an error (the file shrank).
func readChunk(_ fd: Int32, at offset: Int, length: Int, into bufs: inout [ByteBuffer], pieceSize: Int, path: String) throws {
    let count = (length + pieceSize - 1) / pieceSize
    if bufs.count > count { bufs.removeLast(bufs.count - count) }
    while bufs.count < count { bufs.append(ByteBuffer()) }
    for i in 0..<count {
        try readChunk(fd, at: offset + i * pieceSize, length: min(pieceSize, length - i * pieceSize), into: &bufs[i], path: path)
    }
}

/// Reads `length` bytes at `offset` into `buf`, replacing what it held (its memory is reused when nothing else
/// holds it). Fewer bytes are an error (the file shrank) unless `allowShort`, when only none is.
func readChunk(_ fd: Int32, at offset: Int, length: Int, into buf: inout ByteBuffer, path: String, allowShort: Bool = false) throws {
    buf.clear()
    let n = try buf.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { p -> Int in
        var done = 0
        while done < length {
            let r = pread(fd, p.baseAddress! + done, length - done, off_t(offset + done))
            if r > 0 {
                done += r
            } else if r == 0 {
                break
            } else if errno != EINTR {
                throw S3Error("InternalError", 500, "read \(path): \(errnoText())")
            }
        }
        return done
    }
    if n == 0 || (n < length && !allowShort) { throw S3Error("InternalError", 500, "\(path) shrank while being read") }
}
