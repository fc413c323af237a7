import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child tool (pg_dump, pg_restore, psql) with piped stdout or stdin and its stderr collected (the last
/// 16 KiB) on a thread of its own. Blocking; use from a thread you own.
public final class ToolProcess: @unchecked Sendable {
    public let path: String
    public let arguments: [String]
    let process = Process()
    let stdoutPipe: Pipe?
    let stdinPipe: Pipe?
    let stderrPipe = Pipe()
    private let stderrLock = NSLock()
    private var stderrTail: [UInt8] = []
    private let stderrDone = DispatchSemaphore(value: 0)

    public init(path: String, arguments: [String], pipeStdout: Bool, pipeStdin: Bool, environment: [String: String]? = nil) {
        self.path = path
        self.arguments = arguments
        stdoutPipe = pipeStdout ? Pipe() : nil
        stdinPipe = pipeStdin ? Pipe() : nil
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = stdoutPipe ?? FileHandle.nullDevice
        process.standardInput = stdinPipe ?? FileHandle.nullDevice
        process.standardError = stderrPipe
    }

    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw PGError(message: "\(path) is not an executable (is the PostgreSQL client of this major version installed?)")
        }
        // 1 MiB pipes (F_SETPIPE_SZ): fewer wake-ups between the tool and our pipeline.
        for pipe in [stdoutPipe, stdinPipe].compactMap({ $0 }) {
            _ = fcntl(pipe.fileHandleForReading.fileDescriptor, 1031 /* F_SETPIPE_SZ */, 1 << 20)
        }
        try process.run()
        let fd = stderrPipe.fileHandleForReading.fileDescriptor
        let t = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                stderrLock.lock()
                stderrTail.append(contentsOf: buf[0..<n])
                if stderrTail.count > 16384 { stderrTail.removeFirst(stderrTail.count - 16384) }
                stderrLock.unlock()
            }
            stderrDone.signal()
        }
        t.name = "tool.stderr"
        t.start()
    }

    public var pid: Int32 { process.processIdentifier }

    public var stderr: String {
        stderrLock.lock(); defer { stderrLock.unlock() }
        return String(decoding: stderrTail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Reads stdout into `body` until EOF.
    public func readStdout(chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let fd = stdoutPipe?.fileHandleForReading.fileDescriptor else { return }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = read(fd, buf.baseAddress, chunkSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw PGError(message: "reading from \(name): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            try body(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
    }

    /// Writes all of `bytes` to the child's stdin; throws when the child has closed it (ended early).
    public func writeStdin(_ bytes: UnsafeRawBufferPointer) throws {
        guard let fd = stdinPipe?.fileHandleForWriting.fileDescriptor else { return }
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw PGError(message: "\(name) stopped reading its input (\(String(cString: strerror(errno))))\(stderrSuffix)")
            }
            offset += n
        }
    }

    public func closeStdin() {
        try? stdinPipe?.fileHandleForWriting.close()
    }

    public func closeStdout() {
        try? stdoutPipe?.fileHandleForReading.close()
    }

    public var name: String { (path as NSString).lastPathComponent }

    var stderrSuffix: String {
        let e = stderr
        return e.isEmpty ? "" : ": \(e)"
    }

    /// Waits for the child; throws (with its stderr) unless it exited 0.
    public func wait() throws {
        process.waitUntilExit()
        _ = stderrDone.wait(timeout: .now() + 5)
        if process.terminationReason == .uncaughtSignal {
            throw PGError(message: "\(name) was killed by signal \(process.terminationStatus)\(stderrSuffix)")
        }
        if process.terminationStatus != 0 {
            throw PGError(message: "\(name) exited with status \(process.terminationStatus)\(stderrSuffix)")
        }
    }

    public func kill(_ signal: Int32 = SIGTERM) {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
    }
}
