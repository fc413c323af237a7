import CAutomateShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child tool (pg_dump, pg_restore, psql, tar) with piped stdout or stdin and its stderr collected (the
/// last 16 KiB) on a thread of its own.
///
/// The tool leads a process group of its own, so ``kill(_:)`` reaches everything it started, and it gets
/// SIGKILL if this process dies (PR_SET_PDEATHSIG). Reading, writing and ``wait()`` block: use them from
/// one thread you own (a `BlockingPool` job); ``kill(_:)`` may be called from any thread, at any time.
public final class ToolProcess: @unchecked Sendable {  // mutable state behind `lock`; fds used by one thread
    public let path: String
    public let arguments: [String]
    private let environment: [String: String]?
    private let pipeStdout: Bool
    private let pipeStdin: Bool

    private enum Phase { case created, running(pid_t), reaped }
    private let lock = NSLock()
    private var phase = Phase.created
    private var killedOnPurpose = false
    private var stdoutFD: Int32 = -1
    private var stdinFD: Int32 = -1
    /// Filled by the stderr reader thread, which holds only it and the pipe's fd (never `self`, so that
    /// `deinit` can kill a tool left running).
    private let stderrTail = StderrTail()
    private var stderrReading = false

    public init(path: String, arguments: [String], pipeStdout: Bool, pipeStdin: Bool, environment: [String: String]? = nil) {
        self.path = path
        self.arguments = arguments
        self.pipeStdout = pipeStdout
        self.pipeStdin = pipeStdin
        self.environment = environment
    }

    deinit {
        // A tool never waited for (its thread threw before wait): kill its group and reap it.
        if case .running(let pid) = phase {
            Glibc.kill(-pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if stdoutFD >= 0 { close(stdoutFD) }
        if stdinFD >= 0 { close(stdinFD) }
    }

    /// The program's file name (`pg_dump`).
    public var name: String { (path as NSString).lastPathComponent }

    /// The tool's pid (also its process group id), 0 before start and after it was reaped.
    public var pid: Int32 {
        lock.withLock { if case .running(let pid) = phase { return pid } else { return 0 } }
    }

    /// The last 16 KiB the tool wrote to stderr, trimmed.
    public var stderr: String {
        stderrTail.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts the tool in a new process group.
    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw DataToolsError(.toolMissing, "\(path) is not an executable (is the tool of this version installed? scripts/install.sh --deps)")
        }
        var out: [Int32] = [-1, -1], input: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        func makePipe(_ fds: inout [Int32]) throws {
            guard fds.withUnsafeMutableBufferPointer({ automate_pipe_cloexec($0.baseAddress!) }) == 0 else {
                throw DataToolsError(.spawnFailed, "cannot make a pipe for \(name): \(String(cString: strerror(errno)))")
            }
        }
        defer { for fd in [out[1], input[0], err[1]] where fd >= 0 { close(fd) } }  // the child's ends
        do {
            if pipeStdout { try makePipe(&out) }
            if pipeStdin { try makePipe(&input) }
            try makePipe(&err)
        } catch {
            for fd in [out[0], input[1], err[0]] where fd >= 0 { close(fd) }
            throw error
        }
        // 1 MiB pipes (F_SETPIPE_SZ): fewer wake-ups between the tool and our pipeline.
        for fd in [out[0], input[1]] where fd >= 0 { _ = fcntl(fd, 1031 /* F_SETPIPE_SZ */, 1 << 20) }

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + env).forEach { free($0) } }
        var pid: pid_t = 0, spawnErrno: Int32 = 0
        var step: UnsafePointer<CChar>? = nil
        let rc = path.withCString { cPath in
            argv.withUnsafeBufferPointer { argvBuf in
                env.withUnsafeBufferPointer { envBuf in
                    var options = automate_spawn_options()
                    options.path = cPath
                    options.argv = UnsafePointer(argvBuf.baseAddress!)
                    options.envp = UnsafePointer(envBuf.baseAddress!)
                    options.working_directory = nil
                    options.stdin_fd = input[0]
                    options.stdout_fd = out[1]
                    options.stderr_fd = err[1]
                    options.extra_fd = -1
                    options.uid = -1
                    options.gid = -1
                    options.groups = nil
                    options.group_count = -1
                    options.process_group_mode = 1
                    options.death_signal = SIGKILL
                    options.umask_value = -1
                    return automate_spawn(&options, &pid, &spawnErrno, &step)
                }
            }
        }
        if rc != 0 {
            if pid > 0 { var status: Int32 = 0; while waitpid(pid, &status, 0) < 0 && errno == EINTR {} }
            for fd in [out[0], input[1], err[0]] where fd >= 0 { close(fd) }
            let where_ = step.map { String(cString: $0) } ?? "spawn"
            throw DataToolsError(.spawnFailed, "cannot start \(path): \(where_): \(String(cString: strerror(spawnErrno)))")
        }
        lock.withLock {
            phase = .running(pid)
            stdoutFD = out[0]
            stdinFD = input[1]
            stderrReading = true
        }
        stderrTail.startReading(err[0])
    }

    /// Reads stdout into `body` until EOF.
    public func readStdout(chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let fd = lock.withLock { stdoutFD }
        guard fd >= 0 else { return }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = read(fd, buf.baseAddress, chunkSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw DataToolsError(.io, "reading from \(name): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            try body(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
    }

    /// Writes all of `bytes` to the child's stdin; throws when the child has closed it (ended early).
    public func writeStdin(_ bytes: UnsafeRawBufferPointer) throws {
        let fd = lock.withLock { stdinFD }
        guard fd >= 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                if wasKilledOnPurpose { throw DataToolsError(.cancelled, "\(name) was stopped (cancelled)") }
                throw DataToolsError(.io, "\(name) stopped reading its input (\(reason))\(stderrSuffix)")
            }
            offset += n
        }
    }

    /// Closes the child's stdin (it sees end of input).
    public func closeStdin() {
        let fd = lock.withLock { () -> Int32 in let fd = stdinFD; stdinFD = -1; return fd }
        if fd >= 0 { close(fd) }
    }

    private var wasKilledOnPurpose: Bool { lock.withLock { killedOnPurpose } }

    var stderrSuffix: String {
        let e = stderr
        return e.isEmpty ? "" : ": \(e)"
    }

    /// Waits for the child; throws (with its stderr) unless it exited 0: `.cancelled` when ``kill(_:)``
    /// stopped it, `.toolFailed` otherwise.
    public func wait() throws {
        guard case .running(let pid) = lock.withLock({ phase }) else { return }
        // Wait without reaping first (WNOWAIT): until the pid is reaped under the lock, kill() can never
        // signal a process group id that was reused.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        var status: Int32 = 0
        lock.withLock {
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            phase = .reaped
        }
        if lock.withLock({ stderrReading }) { stderrTail.waitForEnd(timeout: .now() + 5) }
        var code: Int32 = 0
        let how = automate_decode_wait_status(status, &code)
        if wasKilledOnPurpose && !(how == 1 && code == 0) {
            throw DataToolsError(.cancelled, "\(name) was stopped (cancelled)")
        }
        if how == 2 {
            throw DataToolsError(.toolFailed, "\(name) was killed by signal \(code)\(stderrSuffix)")
        }
        if how != 1 || code != 0 {
            throw DataToolsError(.toolFailed, "\(name) exited with status \(code)\(stderrSuffix)")
        }
    }

    /// Sends `signal` to the tool's whole process group (a no-op once it was reaped). Any thread.
    public func kill(_ signal: Int32 = SIGKILL) {
        lock.withLock {
            guard case .running(let pid) = phase else { return }
            killedOnPurpose = true
            Glibc.kill(-pid, signal)
        }
    }
}

/// The last 16 KiB a tool wrote to stderr, read on a thread of its own until the pipe closes.
private final class StderrTail: @unchecked Sendable {  // `bytes` behind `lock`
    private static let limit = 16384
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private let done = DispatchSemaphore(value: 0)

    var text: String { lock.withLock { String(decoding: bytes, as: UTF8.self) } }

    /// Reads `fd` until EOF on a new thread, keeping the tail, then closes it and signals the end.
    func startReading(_ fd: Int32) {
        let reader = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                lock.withLock {
                    bytes.append(contentsOf: buf[0..<n])
                    if bytes.count > Self.limit { bytes.removeFirst(bytes.count - Self.limit) }
                }
            }
            close(fd)
            done.signal()
        }
        reader.name = "tool.stderr"
        reader.start()
    }

    /// Waits until the reader saw EOF (the tool and every process holding its stderr exited), at most until `deadline`.
    func waitForEnd(timeout deadline: DispatchTime) {
        _ = done.wait(timeout: deadline)
    }
}
