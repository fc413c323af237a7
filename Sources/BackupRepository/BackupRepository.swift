import Crypto
import Foundation

/// A backup repository on disk (DESIGN.md's layout): one folder per backup id, readable with plain tools.
/// Lists backups with their state and size, and verifies them (every sha256) without any service running.
public struct BackupRepository: Sendable {
    /// The repository folder.
    public let path: String

    public init(path: String) {
        self.path = (path as NSString).standardizingPath
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
    }

    /// What can go wrong reading a repository.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public enum Kind: Sendable { case notFound, unreadable, invalid }
        public let kind: Kind
        public let message: String
        public var description: String { message }
    }

    /// Every backup folder, oldest first. Folders whose name is not a backup id are skipped.
    public func list() throws -> [Entry] {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(kind: .notFound, message: "no backup repository at \(path)")
        }
        let names: [String]
        do {
            names = try fm.contentsOfDirectory(atPath: path)
        } catch {
            throw Failure(kind: .unreadable, message: "cannot read \(path): \(error.localizedDescription)")
        }
        return try names.compactMap(BackupID.init).sorted().map(entry)
    }

    /// One backup.
    public func entry(_ id: BackupID) throws -> Entry {
        let folder = folder(of: id)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure(kind: .notFound, message: "no backup \(id) in \(path)")
        }
        let services = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.filter { name in
            var dir: ObjCBool = false
            return !name.hasPrefix(".") && FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &dir) && dir.boolValue
        }.sorted() ?? []
        return Entry(
            id: id, state: state(of: id), services: services, size: Self.size(of: folder),
            fingerprint: try? Self.sha256(ofFile: folder + "/checksums.json"))
    }

    /// The folder of a backup.
    public func folder(of id: BackupID) -> String { path + "/" + id.rawValue }

    /// The state its `.status` marker says (phase-one when there is neither marker nor checksums).
    public func state(of id: BackupID) -> State {
        let folder = folder(of: id)
        guard let text = try? String(contentsOfFile: folder + "/.status", encoding: .utf8) else {
            return FileManager.default.fileExists(atPath: folder + "/checksums.json") ? .unknown : .phaseOne
        }
        return State(rawValue: text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .unknown
    }

    /// Total bytes of the regular files below `folder`.
    static func size(of folder: String) -> UInt64 {
        guard let walker = FileManager.default.enumerator(atPath: folder) else { return 0 }
        var total: UInt64 = 0
        while let relative = walker.nextObject() as? String {
            var info = stat()
            if lstat(folder + "/" + relative, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { total += UInt64(info.st_size) }
        }
        return total
    }

    /// sha256 of a file, read in 1 MiB pieces (lower-case hex).
    public static func sha256(ofFile path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw Failure(kind: .unreadable, message: "cannot read \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
