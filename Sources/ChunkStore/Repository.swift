import Crypto
import Foundation

/// An open chunked repository: its store, its ``RepositoryConfig`` and its ``MasterKey``.
///
/// ```swift
/// let store = try FolderStore(root: "/srv/backups/repo")    // or S3ObjectStore(client:bucket:prefix:)
/// let repo = try Repository.initialize(store: store, passphrase: p, label: "first key")  // once
/// let repo = try Repository.open(store: store, passphrase: p)                           // afterwards
/// ```
///
/// Writers (``ChunkedWriter``), readers (``ChunkedReader``) and ``Repository/verify(records:readDataSubset:)``
/// are made from it. Every method blocks on the store.
public struct Repository: Sendable {
    /// Where its objects are.
    public let store: any ObjectStore
    /// Its config object.
    public let config: RepositoryConfig
    /// Its master key (opened with a passphrase).
    public let masterKey: MasterKey

    static let configKey = "config"

    /// Makes a new repository in `store`: a `config` object and one key file wrapping a fresh master key.
    /// Refused when `store` already holds a `config`.
    public static func initialize(
        store: any ObjectStore, passphrase: String, label: String = "initial key", chunker: ChunkerParameters = .standard,
        kdf: ScryptParameters = .standard
    ) throws -> Repository {
        if try store.exists(configKey) {
            throw ChunkStoreError(.alreadyARepository, "\(store.location) already holds a repository (its config object exists); open it instead")
        }
        let master = MasterKey.random()
        let config = RepositoryConfig(chunker: chunker)
        let repo = Repository(store: store, config: config, masterKey: master)
        _ = try repo.addKey(passphrase: passphrase, label: label, kdf: kdf)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try store.put(configKey, Array(try encoder.encode(config)))
        return repo
    }

    /// Opens the repository in `store` with `passphrase`: tries every key file (so its cost is one
    /// scrypt derivation per key file tried). Throws ``ChunkStoreErrorCode/wrongPassphrase`` when none opens.
    public static func open(store: any ObjectStore, passphrase: String) throws -> Repository {
        let config = try readConfig(store)
        let names = try store.list(prefix: "keys/")
        guard !names.isEmpty else {
            throw ChunkStoreError(.noKeys, "\(store.location) has no key files under keys/: the repository cannot be opened; restore keys/ from a copy")
        }
        for name in names {
            let file = try KeyFile.decode(try store.get(name), name: name)
            if let master = try file.open(passphrase: passphrase, name: name) {
                return Repository(store: store, config: config, masterKey: master)
            }
        }
        throw ChunkStoreError(
            .wrongPassphrase,
            "no key in \(store.location) opens with this passphrase (\(names.count) key\(names.count == 1 ? "" : "s") tried); check the passphrase or ask for a key to be added")
    }

    private static func readConfig(_ store: any ObjectStore) throws -> RepositoryConfig {
        let bytes: [UInt8]
        do {
            bytes = try store.get(configKey)
        } catch let e as ChunkStoreError where e.code == .objectMissing {
            throw ChunkStoreError(.notARepository, "\(store.location) is not a chunked repository (no config object); check the path, bucket and prefix, or initialize it")
        }
        let config: RepositoryConfig
        do {
            config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(bytes))
        } catch {
            throw ChunkStoreError(.damaged, "the config object of \(store.location) is not valid JSON of a repository config (\(error)); restore it from a copy")
        }
        guard config.version == RepositoryConfig.currentVersion, config.gear == RepositoryConfig.currentGear else {
            throw ChunkStoreError(
                .unsupportedFormat, "\(store.location) is repository format \(config.version) (gear \(config.gear)); this build reads format 1: upgrade")
        }
        return config
    }

    // MARK: keys

    /// Adds a key file wrapping this repository's master key with `passphrase`; returns its key id.
    @discardableResult
    public func addKey(passphrase: String, label: String, kdf: ScryptParameters = .standard) throws -> String {
        let file = try KeyFile.make(master: masterKey, passphrase: passphrase, label: label, kdf: kdf)
        let bytes = try file.encoded()
        let id = BlobID(bytes: SHA256.hash(data: bytes))!.hex
        try store.put("keys/\(id)", bytes)
        return id
    }

    /// The key files (id, label, created), sorted by id.
    public func listKeys() throws -> [KeyInfo] {
        try Self.listKeys(store: store)
    }

    /// The key files of the repository in `store`, without opening it (key files are readable; what
    /// they wrap is not).
    public static func listKeys(store: any ObjectStore) throws -> [KeyInfo] {
        try store.list(prefix: "keys/").map { name in
            let file = try KeyFile.decode(try store.get(name), name: name)
            return KeyInfo(id: String(name.dropFirst("keys/".count)), label: file.label, created: file.created)
        }
    }

    /// Removes key file `id`. Refused for the last key (the repository would be unreadable forever).
    public func removeKey(id: String) throws {
        let names = try store.list(prefix: "keys/")
        guard names.contains("keys/\(id)") else {
            throw ChunkStoreError(.keyMissing, "key \(id) is not in \(store.location) (keys: \(names.map { String($0.dropFirst(5)) }.joined(separator: ", ")))")
        }
        guard names.count > 1 else {
            throw ChunkStoreError(.lastKey, "key \(id) is the last key of \(store.location): removing it would make the repository unreadable; add another key first")
        }
        try store.delete("keys/\(id)")
    }

    // MARK: index

    /// Loads and merges every `index/` object (each authenticated with the master key).
    public func loadIndex() throws -> RepositoryIndex {
        let codec = try ZstdCodec()
        var index = RepositoryIndex()
        for name in try store.list(prefix: "index/") {
            let sealed = try store.get(name)
            let plain = try sealed.withUnsafeBytes {
                try Envelope.open($0, kind: .index, key: masterKey.encryptionKey, codec: codec, what: "index object \(name) in \(store.location)")
            }
            index.merge(try RepositoryIndex.parse(plain, name: name))
        }
        return index
    }
}
