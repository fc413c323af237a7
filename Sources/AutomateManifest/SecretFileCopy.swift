/// A file the supervisor copies for one service before each of its starts, owned by the service's user
/// and readable by it alone (0400), so that a secret the operator keeps root's (0600) reaches exactly the
/// services that need it and never an environment.
public struct SecretFileCopy: Sendable, Equatable {
    /// What the copy holds.
    public enum Format: Sendable, Equatable {
        /// The source's bytes.
        case verbatim
        /// A libpq password file (`PGPASSFILE`) for `user`: `*:*:*:<user>:<password>`, the password being
        /// the source's first line.
        case pgpass(user: String)
        /// An HTTP `Authorization` value: `Basic <base64(user:password)>` (the source's first line is the
        /// password).
        case basicAuthorization(user: String)
        /// An HTTP `Authorization` value: `ApiKey <key>` (the source's first line).
        case apiKeyAuthorization
    }

    /// The operator's file.
    public var source: String
    /// The service's copy.
    public var destination: String
    public var format: Format

    public init(source: String, destination: String, format: Format) {
        self.source = source
        self.destination = destination
        self.format = format
    }
}
