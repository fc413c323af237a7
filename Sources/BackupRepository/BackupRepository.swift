import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A backup repository (DESIGN.md's layout): one folder per backup id, readable with plain tools, on disk
/// or in S3. Lists backups with their state and size, and verifies them (every sha256) without any
/// service running.
public struct BackupRepository: Sendable {
    /// Where its files are.
    public let store: any RepositoryStore
    /// The repository as a user names it: the folder, or `s3://bucket/prefix`.
    public var path: String { store.location }

    /// A repository folder.
    public init(path: String) {
        store = FolderStore(path: path)
    }

    /// A repository in any store.
    public init(store: any RepositoryStore) {
        self.store = store
    }

    /// A backup's state, from its `.status` marker.
    public enum State: String, Sendable, Equatable {
        case inProgress = "in_progress"
        case failed
        case completed
        /// An older backup written with plain files: no `.status`, no checksums, plain-SQL dumps.
        case phaseOne = "phase-one"
        /// A `.status` with unexpected content.
        case unknown

        /// Only completed backups (and phase-one folders, which have no marker) are offered for restore.
        public var isRestorable: Bool { self == .completed || self == .phaseOne }
    }

    /// One backup folder.
    public struct Entry: Sendable, Equatable {
        public let id: BackupID
        public let state: State
        /// Service folders in it.
        public let services: [String]
        /// Bytes of every file in it.
        public let size: UInt64
        /// sha256 of `checksums.json`, when present.
        public let fingerprint: String?
        /// Why it did not complete: `backup-result.json`'s error, for a backup that is not completed.
        public let error: String?
    }

    /// What can go wrong reading a repository.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public enum Kind: Sendable { case notFound, unreadable, invalid }
        public let kind: Kind
        public let message: String
        public var description: String { message }
    }

    /// Every backup folder, oldest first. Names that are not backup ids are skipped.
    public func list() throws -> [Entry] {
        try store.topLevelNames().compactMap(BackupID.init).sorted().map(entry)
    }

    /// One backup.
    public func entry(_ id: BackupID) throws -> Entry {
        let files = try store.files(under: id.rawValue + "/")
        guard !files.isEmpty else {
            throw Failure(kind: .notFound, message: "no backup \(id) in \(path)")
        }
        var services = Set<String>()
        for f in files {
            let parts = f.path.split(separator: "/")
            if parts.count >= 3, !parts[1].hasPrefix(".") { services.insert(String(parts[1])) }
        }
        let state = state(of: id, files: files.map(\.path))
        var error: String? = nil
        if state != .completed, state != .phaseOne, files.contains(where: { $0.path == id.rawValue + "/backup-result.json" }),
           let data = try? store.read(id.rawValue + "/backup-result.json"),
           let result = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let text = result["error"] as? String, !text.isEmpty {
            error = text
        }
        return Entry(
            id: id, state: state, services: services.sorted(),
            size: files.reduce(0) { $0 + $1.size }, fingerprint: try? store.sha256(id.rawValue + "/checksums.json"), error: error)
    }

    /// The folder of a backup (for a repository on disk).
    public func folder(of id: BackupID) -> String { path + "/" + id.rawValue }

    /// The state its `.status` marker says (phase-one when there is neither marker nor checksums).
    public func state(of id: BackupID) -> State {
        state(of: id, files: nil)
    }

    private func state(of id: BackupID, files: [String]?) -> State {
        guard let data = try? store.read(id.rawValue + "/.status") else {
            let hasChecksums: Bool
            if let files {
                hasChecksums = files.contains(id.rawValue + "/checksums.json")
            } else {
                hasChecksums = ((try? store.size(id.rawValue + "/checksums.json")) ?? nil) != nil
            }
            return hasChecksums ? .unknown : .phaseOne
        }
        return State(rawValue: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? .unknown
    }

    /// sha256 of a file, read in 1 MiB pieces into one buffer (lower-case hex).
    public static func sha256(ofFile path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(kind: .unreadable, message: "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var hasher = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw Failure(kind: .unreadable, message: "reading \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
        }
        return Checksum.hex(hasher.finalize())
    }
}
