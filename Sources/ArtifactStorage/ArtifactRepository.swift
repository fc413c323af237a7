import ChunkStore
import Foundation
import S3Client

/// The backup repository as a process of the stack writes and reads artifacts in it: through an S3 API
/// (the `backup-gateway`), in the format its `repository.json` records — plain (each artifact a whole
/// object, as every repository before the chunked format) or chunked (deduplicated, compressed,
/// encrypted chunks under `chunks/`, see docs/repository-format.md).
///
/// ```swift
/// let repository = ArtifactRepository(s3: s3, bucket: "backups", passphraseFile: path)
/// let session = try repository.writeSession()
/// let sink = try session.sink(key: "20261201000000/teams-service/pg_data/teams", compressionLevel: 1)
/// try sink.write(bytes) ... ; let stored = try sink.finish()
/// try session.commit()            // before the records naming `stored` are written
/// ```
///
/// Every method blocks (S3 requests; opening a chunked repository derives a key with scrypt once per
/// process): call it from a thread of your own or a blocking pool.
public final class ArtifactRepository: @unchecked Sendable {
    /// The S3 API the repository is reached through.
    public let s3: S3Client
    /// The bucket.
    public let bucket: String
    /// Prefix of the repository in the bucket: empty, or ending in `/`.
    public let prefix: String
    /// Where the passphrase comes from (nil: none given to this process).
    public let passphraseSource: PassphraseSource?

    /// Where a process finds the passphrase of a chunked repository.
    public enum PassphraseSource: Sendable, Equatable {
        /// The first line of a file (the supervisor gives each service a copy of the home's, 0400).
        case file(String)
        /// The passphrase itself (from `AUTOMATE_BACKUP_PASSPHRASE`).
        case literal(String)
    }

    private let lock = NSLock()
    /// Opened chunk stores, by passphrase (the master key is kept so scrypt runs once).
    private var opened: [String: ChunkStore.Repository] = [:]

    public init(s3: S3Client, bucket: String, prefix: String = "", passphrase: PassphraseSource?) {
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.passphraseSource = passphrase
    }

    /// The passphrase source a service was started with: `AUTOMATE_BACKUP_PASSPHRASE_FILE` (what the
    /// supervisor sets), else `AUTOMATE_BACKUP_PASSPHRASE`, else none.
    public static func passphraseSource(environment env: [String: String] = ProcessInfo.processInfo.environment) -> PassphraseSource? {
        if let file = env["AUTOMATE_BACKUP_PASSPHRASE_FILE"], !file.isEmpty { return .file(file) }
        if let value = env["AUTOMATE_BACKUP_PASSPHRASE"], !value.isEmpty { return .literal(value) }
        return nil
    }

    /// The repository's top (`repository.json`, the backup folders).
    public var top: S3ObjectStore { S3ObjectStore(client: s3, bucket: bucket, prefix: prefix) }
    /// Its chunk store (`chunks/`).
    public var chunkStore: S3ObjectStore { S3ObjectStore(client: s3, bucket: bucket, prefix: prefix + RepositoryFormat.chunksPrefix) }

    /// The format `repository.json` records (none: plain, as every repository made before the chunked format).
    public func format() throws -> RepositoryFormat.Kind {
        do {
            return try RepositoryFormat.read(from: top)?.format ?? .plain
        } catch let e as ChunkStoreError where e.code == .unsupportedFormat {
            throw ArtifactStorageError(.unsupported, e.message)
        } catch let e as ChunkStoreError {
            throw ArtifactStorageError(.storage, "cannot read the format of the backup repository: \(e.message)")
        }
    }

    /// Records `format` for a repository that has no record and holds nothing yet (no backup, no
    /// chunk store), making the chunk store and its first key when chunked; returns the format in force
    /// afterwards. So new repositories get the default format while every existing plain one stays plain
    /// until `automate backup repository upgrade`: one that holds backups but no record (made before the
    /// chunked format) is recorded plain here, so that it is listed once, not at every backup.
    @discardableResult
    public func initializeIfNew(_ format: RepositoryFormat.Kind, label: String = "stack key") throws -> RepositoryFormat.Kind {
        let current = try RepositoryFormat.read(from: top)
        if let current { return current.format }
        let objects: [S3ObjectInfo]
        do { objects = try s3.listObjectsSync(bucket: bucket, prefix: prefix) } catch {
            throw ArtifactStorageError(.storage, "cannot list the backup repository s3://\(bucket)/\(prefix): \(error)")
        }
        guard objects.isEmpty else {
            try RepositoryFormat(format: .plain).write(to: top)
            return .plain
        }
        if format == .chunked {
            let passphrase = try passphrase()
            let made = try wrapOpen { try ChunkStore.Repository.initialize(store: chunkStore, passphrase: passphrase, label: label) }
            lock.withLock { opened[passphrase] = made }
        }
        try RepositoryFormat(format: format).write(to: top)
        return format
    }

    /// The chunk store, opened with this process's passphrase (scrypt runs on the first call only, and
    /// again only when the repository was replaced by another one).
    public func openChunked() throws -> ChunkStore.Repository {
        let passphrase = try passphrase()
        if let cached = lock.withLock({ opened[passphrase] }) {
            // The same repository still? Its config names its id; a repository made anew has another.
            if let bytes = try? chunkStore.get("config"),
               let config = try? JSONDecoder().decode(RepositoryConfig.self, from: Data(bytes)), config.id == cached.config.id {
                return cached
            }
        }
        let repository = try wrapOpen { try ChunkStore.Repository.open(store: chunkStore, passphrase: passphrase) }
        lock.withLock { opened[passphrase] = repository }
        return repository
    }

    /// A writing session in the format in force; a chunked one compresses chunks at `compressionLevel`.
    public func writeSession(purpose: String, compressionLevel: Int32 = 1) throws -> ArtifactWriteSession {
        switch try format() {
        case .plain: return ArtifactWriteSession(repository: self, chunked: nil, lock: nil, purpose: purpose)
        case .chunked:
            let store = try openChunked()
            // Shared: backups run side by side; `automate backup prune` (exclusive) waits for them.
            let lock = try lock(store, purpose: purpose)
            do {
                let writer = try wrapOpen { try ChunkedWriter(repository: store, compressionLevel: compressionLevel) }
                return ArtifactWriteSession(repository: self, chunked: writer, lock: lock, purpose: purpose)
            } catch {
                try? lock.release()
                throw error
            }
        }
    }

    /// A reader of artifacts in either format (it opens the chunk store on the first chunked artifact).
    public func reader() -> ArtifactReader { ArtifactReader(repository: self) }

    /// How long a session or reader waits for a prune (the exclusive lock) to finish before it fails.
    public static let pruneWait: Duration = .seconds(600)

    /// A shared lock on the chunk store for a session or a reader. A prune holding the exclusive lock (or
    /// only trying to take it) is waited for, with backoff, up to ``pruneWait``; then it fails, naming it.
    func lock(_ store: ChunkStore.Repository, purpose: String) throws -> RepositoryLockHandle {
        let deadline = ContinuousClock.now + Self.pruneWait
        var pause: Duration = .milliseconds(50)
        while true {
            do {
                return try store.lock(exclusive: false, purpose: purpose)
            } catch let e as ChunkStoreError where e.code == .locked {
                guard ContinuousClock.now + pause < deadline else {
                    throw ArtifactStorageError(.storage, "the chunk store stayed locked for \(purpose) for \(Self.pruneWait): \(e.message)")
                }
                Thread.sleep(forTimeInterval: Double(pause.components.seconds) + Double(pause.components.attoseconds) / 1e18)
                pause = min(pause * 2, .seconds(5))
            } catch let e as ChunkStoreError {
                throw ArtifactStorageError(.storage, "cannot lock the chunk store for \(purpose): \(e.message)")
            }
        }
    }

    /// The passphrase, or an error saying where it was looked for.
    func passphrase() throws -> String {
        switch passphraseSource {
        case .literal(let value): return value
        case .file(let path):
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let line = text.split(separator: "\n", omittingEmptySubsequences: false).first, !line.isEmpty else {
                throw ArtifactStorageError(
                    .noPassphrase, "the backup repository is chunked (encrypted) and its passphrase file \(path) cannot be read (or is empty); restart the service with automate-supervisor, which writes it")
            }
            return String(line)
        case nil:
            throw ArtifactStorageError(
                .noPassphrase, "the backup repository s3://\(bucket)/\(prefix) is chunked (encrypted) and this process was given no passphrase: set AUTOMATE_BACKUP_PASSPHRASE_FILE or AUTOMATE_BACKUP_PASSPHRASE (the supervisor sets the first for services with `[backup] gateway = true`)")
        }
    }

    /// Runs `body`, turning the chunk store's errors into this module's (a wrong passphrase says so).
    func wrapOpen<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ChunkStoreError {
            switch e.code {
            case .wrongPassphrase: throw ArtifactStorageError(.wrongPassphrase, e.message)
            case .unsupportedFormat, .notARepository, .noKeys: throw ArtifactStorageError(.unsupported, e.message)
            default: throw ArtifactStorageError(.storage, e.message)
            }
        }
    }
}
