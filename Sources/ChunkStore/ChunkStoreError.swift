import AutomateErrors

/// The codes of ``ChunkStoreError``: a struct wrapping a private enum, so codes can be added without
/// breaking callers that match on them.
public struct ChunkStoreErrorCode: ErrorCode {
    private enum Value: String, Hashable, Sendable {
        case notARepository, alreadyARepository, unsupportedFormat, wrongPassphrase, noKeys, lastKey, keyMissing
        case objectMissing, storage, damaged, invalidArgument, compression, crypto, misuse, locked
    }
    private let value: Value
    private init(_ value: Value) { self.value = value }

    /// The store holds no `config` object: not a repository (or the wrong folder, bucket or prefix).
    public static let notARepository = Self(.notARepository)
    /// `Repository.initialize` found a `config` object already there.
    public static let alreadyARepository = Self(.alreadyARepository)
    /// The repository's format version (or a structure's version byte) is one this build cannot read.
    public static let unsupportedFormat = Self(.unsupportedFormat)
    /// No key file opens with the passphrase given.
    public static let wrongPassphrase = Self(.wrongPassphrase)
    /// The repository has no key files at all.
    public static let noKeys = Self(.noKeys)
    /// Removing a key was refused because it is the last one (the repository would be unreadable).
    public static let lastKey = Self(.lastKey)
    /// The key id named is not in `keys/`.
    public static let keyMissing = Self(.keyMissing)
    /// An object the repository needs is absent from the store.
    public static let objectMissing = Self(.objectMissing)
    /// The store failed (I/O or S3 error).
    public static let storage = Self(.storage)
    /// Stored bytes fail a check: a pack's SHA-256, an authentication tag, a blob id, a length, a digest.
    public static let damaged = Self(.damaged)
    /// A parameter is out of range (chunker sizes, scrypt parameters, pack size, ...).
    public static let invalidArgument = Self(.invalidArgument)
    /// zstd failed.
    public static let compression = Self(.compression)
    /// The cryptographic library failed for a reason other than a bad tag.
    public static let crypto = Self(.crypto)
    /// The API was used out of order (writing to a finished artifact, committing twice, ...).
    public static let misuse = Self(.misuse)
    /// Another process holds a conflicting lock on the repository (`locks/`), or this process lost its own.
    public static let locked = Self(.locked)

    public var description: String { value.rawValue }
}

/// The one error type of the `ChunkStore` module: a code, a message naming what is wrong, where
/// (repository, object, blob, pack) and what to do.
public typealias ChunkStoreError = CodedError<ChunkStoreErrorCode>
