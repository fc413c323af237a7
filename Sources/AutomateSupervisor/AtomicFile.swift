import Foundation

/// Writes a file whole or not at all: a temp file in the same folder, fsync, rename, fsync of the
/// folder. A crash leaves the old file or the new one, never half of either.
public enum AtomicFile {
    /// Replaces `path` with `text`, with `mode` and (as root) `owner`.
    public static func write(_ text: String, to path: String, mode: mode_t, owner: ServiceUser? = nil) throws {
        let folder = (path as NSString).deletingLastPathComponent
        let temp = folder + "/.\((path as NSString).lastPathComponent).\(getpid()).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw SupervisorError(.filesystem, "cannot write \(temp): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        // Exact mode and owner whatever the umask, before the name appears.
        var settled = fchmod(fd, mode) == 0
        if let owner, geteuid() == 0 { settled = settled && fchown(fd, owner.uid, owner.gid) == 0 }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, settled, synced, rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw SupervisorError(.filesystem, "cannot write \(path): \(reason)")
        }
        let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}
