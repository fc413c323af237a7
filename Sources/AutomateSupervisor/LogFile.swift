import Foundation
import Synchronization

/// An append-only log file, one timestamped line per entry, rotated by size
/// (`name.log` → `name.log.1` → ... → `name.log.<keep>`), safe to use from any thread.
public final class LogFile: Sendable {
    /// Where the file lives.
    public let path: String
    /// Rotate when the file would grow past this many bytes.
    public let maxBytes: Int
    /// How many rotated files to keep.
    public let keep: Int

    private struct State {
        var fd: Int32 = -1
        var size = 0
    }
    private let state = Mutex(State())

    /// Opens (creating, mode 0640) the log file for appending.
    public init(path: String, maxBytes: Int = 10 << 20, keep: Int = 3) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = keep
        state.withLock { $0 = Self.open(path) }
    }

    deinit {
        state.withLock { s in if s.fd >= 0 { close(s.fd) } }
    }

    /// Appends `line` as `<UTC time> [<source>] <line>` (one write, so lines never interleave).
    public func append(_ line: String, source: String) {
        write(line, source: source)
    }

    private func write(_ line: String, source: String) {
        var text = Self.timestamp()
        text += " [\(source)] "
        text += line
        text += "\n"
        var bytes = Array(text.utf8)
        state.withLock { s in
            if s.size + bytes.count > maxBytes, s.size > 0 { rotate(&s) }
            guard s.fd >= 0 else { return }
            let written = bytes.withUnsafeMutableBytes { Glibc.write(s.fd, $0.baseAddress, $0.count) }
            if written > 0 { s.size += written }
        }
        bytes.removeAll()
    }

    private func rotate(_ s: inout State) {
        if s.fd >= 0 { close(s.fd) }
        if keep > 0 {
            for index in stride(from: keep - 1, through: 1, by: -1) {
                rename("\(path).\(index)", "\(path).\(index + 1)")
            }
            rename(path, "\(path).1")
        } else {
            unlink(path)
        }
        s = Self.open(path)
    }

    private static func open(_ path: String) -> State {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        var info = stat()
        let size = (fd >= 0 && fstat(fd, &info) == 0) ? Int(info.st_size) : 0
        return State(fd: fd, size: size)
    }

    /// `2026-03-02T08:12:23.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
