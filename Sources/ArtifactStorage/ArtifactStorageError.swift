import AutomateErrors

/// The codes of ``ArtifactStorageError``.
public struct ArtifactStorageErrorCode: ErrorCode {
    private enum Value: String, Hashable, Sendable {
        case noPassphrase, wrongPassphrase, unsupported, storage, integrity
    }
    private let value: Value
    private init(_ value: Value) { self.value = value }

    /// The repository is chunked (encrypted) and this process was given no passphrase.
    public static let noPassphrase = Self(.noPassphrase)
    /// The passphrase given opens no key of the repository.
    public static let wrongPassphrase = Self(.wrongPassphrase)
    /// `repository.json` names a format this build does not know, or the chunk store cannot be read.
    public static let unsupported = Self(.unsupported)
    /// The repository could not be reached, read or written.
    public static let storage = Self(.storage)
    /// An artifact's bytes do not match its record.
    public static let integrity = Self(.integrity)

    public var description: String { value.rawValue }
}

/// The one error type of the `ArtifactStorage` module: a code and a message naming the repository, the
/// artifact and what to do.
public typealias ArtifactStorageError = CodedError<ArtifactStorageErrorCode>
