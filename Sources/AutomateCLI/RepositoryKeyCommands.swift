import ArgumentParser
import AutomateSupervisor
import BackupRepository
import ChunkStore
import Foundation

/// Where a backup repository's format record and chunk store are, and the passphrase that opens it.
struct ChunkedRepositoryAccess {
    /// The repository's top (backup-id folders, `repository.json`).
    let top: any ChunkStore.ObjectStore
    /// Its chunk store (`chunks/`).
    let chunks: any ChunkStore.ObjectStore

    /// The stores of a repository given as a folder or `s3://bucket/prefix`.
    init(_ repository: BackupRepository) throws {
        if let s3 = repository.store as? S3Store {
            top = S3ObjectStore(client: s3.client, bucket: s3.bucket, prefix: s3.prefix)
            chunks = S3ObjectStore(client: s3.client, bucket: s3.bucket, prefix: s3.prefix + RepositoryFormat.chunksPrefix)
        } else {
            top = try ChunkStore.FolderStore(root: repository.path)
            chunks = try ChunkStore.FolderStore(root: repository.path + "/" + RepositoryFormat.chunksPrefix.dropLast())
        }
    }

    /// The passphrase that opens a repository: `file`'s first line, else `$AUTOMATE_BACKUP_PASSPHRASE`,
    /// else the home's (the secrets helper's, ``RepositoryPassphrase``); `create` makes the home's when
    /// none is given (for `init`).
    static func passphrase(file: String?, home: AutomateHome, create: Bool = false) throws -> String {
        if file != nil || ProcessInfo.processInfo.environment["AUTOMATE_BACKUP_PASSPHRASE"].map({ !$0.isEmpty }) == true {
            return try passphrase(file: file, variable: "AUTOMATE_BACKUP_PASSPHRASE", purpose: "to open the repository")
        }
        let stored = RepositoryPassphrase(home: home)
        if let existing = try CLIError.reporting(exitCode: 2, { try create ? stored.loadOrCreate() : stored.load() }) {
            return existing
        }
        throw CLIError("no passphrase to open the repository: set AUTOMATE_BACKUP_PASSPHRASE, pass --passphrase-file, or put the exported one back in \(stored.path)", exitCode: 2)
    }

    /// The passphrase from `file` (its first line) or `$<variable>`; an error naming both when neither is given.
    static func passphrase(file: String?, variable: String, purpose: String) throws -> String {
        if let file {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let line = text.split(separator: "\n", omittingEmptySubsequences: false).first, !line.isEmpty else {
                throw CLIError("cannot read a passphrase from \(file) (its first line)", exitCode: 2)
            }
            return String(line)
        }
        guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else {
            throw CLIError("no passphrase \(purpose): set \(variable) or pass the file that holds it", exitCode: 2)
        }
        return value
    }

    /// As root, what the CLI wrote in a folder repository (its format record, key files) goes to the
    /// folder's owner: the gateway's user, which serves it and could not read a file of root's.
    static func giveToOwner(_ repository: BackupRepository) throws {
        guard geteuid() == 0, !(repository.store is S3Store) else { return }
        var info = stat()
        guard stat(repository.path, &info) == 0, info.st_uid != 0, let owner = ServiceUser.lookup(uid: info.st_uid) else { return }
        for name in [RepositoryFormat.key, String(RepositoryFormat.chunksPrefix.dropLast())] {
            let path = repository.path + "/" + name
            if FileManager.default.fileExists(atPath: path) { _ = try ServiceUsers.handOver(path, to: owner) }
        }
    }

    /// The repository's format (no record: plain).
    func format() throws -> RepositoryFormat.Kind {
        try CLIError.reporting(exitCode: 2) { try RepositoryFormat.read(from: top)?.format ?? .plain }
    }

    /// For a chunked repository: the chunk store opened with the passphrase (`file`, else
    /// `$AUTOMATE_BACKUP_PASSPHRASE`, else the home's) and the passphrase; nil for a plain one. A
    /// passphrase that opens no key is refused, saying where it came from and what to give instead.
    func openIfChunked(passphraseFile file: String?, home: AutomateHome) throws -> (repository: ChunkStore.Repository, passphrase: String)? {
        guard try format() == .chunked else { return nil }
        let fromHome = file == nil && (ProcessInfo.processInfo.environment["AUTOMATE_BACKUP_PASSPHRASE"] ?? "").isEmpty
        let passphrase: String
        do { passphrase = try Self.passphrase(file: file, home: home) } catch let e as CLIError {
            throw CLIError("\(top.location) is a chunked (encrypted) repository: \(e.message)", exitCode: 2)
        }
        do {
            return (try ChunkStore.Repository.open(store: chunks, passphrase: passphrase), passphrase)
        } catch let e as ChunkStoreError where e.code == .wrongPassphrase {
            let source = fromHome ? "this home's passphrase (\(RepositoryPassphrase(home: home).path))"
                : file.map { "the passphrase in \($0)" } ?? "$AUTOMATE_BACKUP_PASSPHRASE"
            throw CLIError(
                "\(source) opens no key of \(top.location) (\(e.message)); give the passphrase of the machine that made it (`automate backup key export` there) with --passphrase-file or AUTOMATE_BACKUP_PASSPHRASE; nothing was changed",
                exitCode: 2)
        } catch {
            throw CLIError("cannot open the chunk store of \(top.location): \(error); nothing was changed", exitCode: 2)
        }
    }

    /// ``openIfChunked(passphraseFile:home:)`` for a command that needs a chunked repository: a plain
    /// one is refused, saying so.
    func openChunked(passphraseFile file: String?, home: AutomateHome) throws -> (repository: ChunkStore.Repository, passphrase: String) {
        guard let opened = try openIfChunked(passphraseFile: file, home: home) else {
            throw CLIError("\(top.location) is a plain repository: its backups have no keys (make a chunked one with `automate backup repository upgrade`)", exitCode: 2)
        }
        return opened
    }
}

extension RepositoryFormat.Kind: ExpressibleByArgument {}

/// `automate backup repository init|show`: a repository's format.
struct RepositoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repository", abstract: "Make a backup repository and show its format (plain, or chunked: deduplicated and encrypted).",
        subcommands: [Init.self, Upgrade.self, Show.self])

    /// What making a chunk store takes (`init --format chunked`, `upgrade`), and the making.
    struct ChunkStoreOptions: ParsableArguments {
        @Option(help: "A file whose first line is the passphrase (default: $AUTOMATE_BACKUP_PASSPHRASE, else the home's, made when missing).")
        var passphraseFile: String?
        @Option(help: "A label for the first key.")
        var label = "first key"
        @Option(help: "The average chunk size in KiB, a power of two (chunks are a quarter to four times it). Smaller finds more duplicates in small changes and costs more index.")
        var averageChunkKib = 1024

        /// The chunker's sizes from --average-chunk-kib.
        func chunker() throws -> ChunkerParameters {
            let average = averageChunkKib << 10
            guard let sizes = try? ChunkerParameters(minimum: average / 4, average: average, maximum: average * 4) else {
                throw CLIError("--average-chunk-kib \(averageChunkKib): give a power of two from 1 to 16384", exitCode: 2)
            }
            return sizes
        }

        /// Makes the chunk store of `access` (reusing one a stopped `upgrade` left, when the passphrase
        /// opens it) and records the format chunked; returns it.
        func make(_ access: ChunkedRepositoryAccess, home: AutomateHome) throws -> ChunkStore.Repository {
            let sizes = try chunker()
            let passphrase = try ChunkedRepositoryAccess.passphrase(file: passphraseFile, home: home, create: true)
            let made: ChunkStore.Repository
            if try access.chunks.exists("config") {
                made = try ChunkStore.Repository.open(store: access.chunks, passphrase: passphrase)
            } else {
                made = try ChunkStore.Repository.initialize(store: access.chunks, passphrase: passphrase, label: label, chunker: sizes)
            }
            try RepositoryFormat(format: .chunked).write(to: access.top)
            return made
        }
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a repository's format; a chunked one gets a random key, wrapped by the passphrase.",
            discussion: """
                The passphrase comes from --passphrase-file or $AUTOMATE_BACKUP_PASSPHRASE, else the secrets helper \
                makes one in <home>/secrets/backup-repository.passphrase (`automate backup key export` prints it). \
                Keep it off the machine (or add a second key with `automate backup key add`): a lost passphrase \
                means lost backups.
                """)
        @OptionGroup var options: BackupCommand.RepositoryOptions
        @Argument(help: "The repository: a folder or s3://bucket/prefix (default: --repository, else the gateway's).")
        var path: String?
        @Option(help: "plain or chunked.")
        var format: RepositoryFormat.Kind = .chunked
        @OptionGroup var chunkStore: ChunkStoreOptions

        func run() async throws {
            let repository = try options.resolved(path)
            let access = try ChunkedRepositoryAccess(repository)
            try CLIError.reporting {
                if let existing = try RepositoryFormat.read(from: access.top) {
                    throw CLIError("\(repository.path) is already a \(existing.format.rawValue) repository; nothing changed", exitCode: 2)
                }
                if format == .chunked {
                    let made = try chunkStore.make(access, home: options.homeOptions.resolved)
                    print("Made chunked repository \(repository.path) (id \(made.config.id.prefix(16)), key \(try made.listKeys().first?.id ?? "?")).")
                    print("Keep the passphrase: without it (or another key) its backups cannot be read.")
                } else {
                    try RepositoryFormat(format: .plain).write(to: access.top)
                    print("Recorded \(repository.path) as a plain repository.")
                }
            }
            try ChunkedRepositoryAccess.giveToOwner(repository)
        }
    }

    struct Upgrade: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a plain repository chunked: later backups are deduplicated and encrypted; earlier ones restore as they are.",
            discussion: """
                Adds the chunk store (chunks/, a random key wrapped by the passphrase) and records the format. The \
                backups already there keep their plain files and restore unchanged; nothing is rewritten. The \
                stack's services open the repository with the home's passphrase (<home>/secrets/backup-repository.passphrase, \
                made when missing): give another only for a repository the stack does not write.
                """)
        @OptionGroup var options: BackupCommand.RepositoryOptions
        @Argument(help: "The repository: a folder or s3://bucket/prefix (default: --repository, else the gateway's).")
        var path: String?
        @OptionGroup var chunkStore: ChunkStoreOptions

        func run() async throws {
            let repository = try options.resolved(path)
            let access = try ChunkedRepositoryAccess(repository)
            try CLIError.reporting {
                if try access.format() == .chunked {
                    throw CLIError("\(repository.path) is already chunked; nothing changed", exitCode: 2)
                }
                let made = try chunkStore.make(access, home: options.homeOptions.resolved)
                let backups = (try? repository.list().count) ?? 0
                print("Upgraded \(repository.path) to chunked (id \(made.config.id.prefix(16))): the next backup goes into chunks; its \(backups) earlier backups stay plain and restore as they are.")
                print("Keep the passphrase: without it (or another key) the new backups cannot be read.")
            }
            try ChunkedRepositoryAccess.giveToOwner(repository)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a repository's format (and, chunked, its id and keys).")
        @OptionGroup var options: BackupCommand.RepositoryOptions
        @Argument(help: "The repository (default: --repository, else the gateway's).")
        var path: String?

        func run() async throws {
            let repository = try options.resolved(path)
            let access = try ChunkedRepositoryAccess(repository)
            try CLIError.reporting {
                let format = try RepositoryFormat.read(from: access.top)?.format ?? .plain
                print("\(repository.path): \(format.rawValue)")
                if format == .chunked {
                    for key in try ChunkStore.Repository.listKeys(store: access.chunks) {
                        print("  key \(key.id)  \(key.created)  \(key.label)")
                    }
                }
            }
        }
    }
}

/// `automate backup key list|add|remove`: the passphrases that open a chunked repository.
struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "List, add and remove the passphrases that open a chunked repository (as restic's `key`).",
        subcommands: [List.self, Add.self, Remove.self, Export.self])

    /// The repository and the passphrase that opens it, as every key command takes them.
    struct OpenOptions: ParsableArguments {
        @OptionGroup var repository: BackupCommand.RepositoryOptions
        @Option(help: "A file whose first line is a passphrase that opens it (default: $AUTOMATE_BACKUP_PASSPHRASE, else the home's).")
        var passphraseFile: String?

        /// Opens the repository (`path`, else --repository, else the gateway's).
        func open(_ path: String? = nil) throws -> ChunkStore.Repository {
            try ChunkedRepositoryAccess(try repository.resolved(path))
                .openChunked(passphraseFile: passphraseFile, home: repository.homeOptions.resolved).repository
        }

        /// After a change: what the CLI wrote goes to the folder's owner (see ``ChunkedRepositoryAccess/giveToOwner(_:)``).
        func giveToOwner(_ path: String? = nil) throws {
            try ChunkedRepositoryAccess.giveToOwner(try repository.resolved(path))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys (checks that the passphrase opens one).")
        @OptionGroup var options: OpenOptions
        @Argument(help: "The repository (default: --repository, else the gateway's).")
        var path: String?

        func run() async throws {
            let repository = try options.open(path)
            for key in try CLIError.reporting({ try repository.listKeys() }) { print("\(key.id)  \(key.created)  \(key.label)") }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a passphrase that opens the repository (the master key wrapped again).")
        @OptionGroup var options: OpenOptions
        @Argument(help: "The repository (default: --repository, else the gateway's).")
        var path: String?
        @Option(help: "A file whose first line is the new passphrase (default: $AUTOMATE_BACKUP_NEW_PASSPHRASE).")
        var newPassphraseFile: String?
        @Option(help: "A label for the new key.")
        var label = "added key"

        func run() async throws {
            let repository = try options.open(path)
            let new = try ChunkedRepositoryAccess.passphrase(file: newPassphraseFile, variable: "AUTOMATE_BACKUP_NEW_PASSPHRASE", purpose: "for the new key")
            let id = try CLIError.reporting { try repository.addKey(passphrase: new, label: label) }
            try options.giveToOwner(path)
            print("Added key \(id).")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the home's repository passphrase (the secrets helper's), to keep off this machine.",
            discussion: "Without it, or another key added to the repository, its backups cannot be read on a new machine.")
        @OptionGroup var homeOptions: HomeOptions
        @Option(help: "Write it to this file (0600) instead of printing it.")
        var to: String?

        func run() async throws {
            let stored = RepositoryPassphrase(home: homeOptions.resolved)
            guard let passphrase = try CLIError.reporting(exitCode: 2, { try stored.load() }) else {
                throw CLIError("\(stored.path) does not exist: this home's repository was made with a passphrase of yours ($AUTOMATE_BACKUP_PASSPHRASE or --passphrase-file), which only you hold", exitCode: 2)
            }
            guard let to else {
                print(passphrase)
                return
            }
            try CLIError.reporting { try AtomicFile.write(passphrase + "\n", to: to, mode: 0o600) }
            FileHandle.standardError.write(Data("wrote the passphrase to \(to) (0600): keep it off this machine\n".utf8))
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key; the last one is refused (the backups would be unreadable).")
        @OptionGroup var options: OpenOptions
        @Argument(help: "The key id (from `automate backup key list`).")
        var id: String

        func run() async throws {
            let repository = try options.open()
            try CLIError.reporting { try repository.removeKey(id: id) }
            print("Removed key \(id).")
        }
    }
}
