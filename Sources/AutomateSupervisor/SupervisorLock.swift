import Foundation

/// The lock that makes a home's supervisor unique: an flock(2) on `<home>/run/automate-supervisor.lock`
/// holding the owner's pid. The kernel drops it when the process dies, so a crash never leaves it stale.
public struct SupervisorLock: Sendable {
    private let fd: Int32

    /// Takes the lock or says who holds it.
    public static func acquire(path: String) throws -> SupervisorLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SupervisorError(.filesystem, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(fd)
            throw SupervisorError(
                .alreadyRunning,
                "another supervisor (pid \(holder)) is running for this home; stop it with `automate stop` first")
        }
        ftruncate(fd, 0)
        let text = Array("\(getpid())\n".utf8)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return SupervisorLock(fd: fd)
    }

    /// The pid written by the holder, if the lock is held now (nil: nobody holds it).
    public static func holder(path: String) -> pid_t? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return pid_t(String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Releases the lock.
    public func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
