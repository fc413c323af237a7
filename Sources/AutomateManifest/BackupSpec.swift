/// The `[backup]` table: what is backed up for this service.
///
/// A service that implements the backup contract itself sets `contract = true` and is asked directly;
/// for the others the deployment-service backs up the declared databases, indices and paths through the
/// sidecars on the service's behalf.
public struct BackupSpec: Sendable, Equatable {
    /// True when the service implements the backup contract itself. Default false.
    public var contract: Bool
    /// PostgreSQL database names. Default none.
    public var databases: [String]
    /// Search index names. Default none.
    public var indices: [String]
    /// Folders or files (absolute after `${...}` expansion). Default none.
    public var paths: [String]
    /// Whether the service may use the backup gateway (and receives its keys). Default false.
    public var gateway: Bool
    /// The stack's PostgreSQL server: every stack backup also takes a physical base backup of the
    /// whole cluster (through the pg-sidecar), the start of a point-in-time recovery. Not restored by a
    /// normal restore (the databases come back from their services' dumps), so not in ``ownsData``.
    /// Default false.
    public var cluster = false

    /// Creates a backup spec; the default declares nothing.
    public init(
        contract: Bool = false, databases: [String] = [], indices: [String] = [], paths: [String] = [],
        gateway: Bool = false
    ) {
        self.contract = contract
        self.databases = databases
        self.indices = indices
        self.paths = paths
        self.gateway = gateway
    }

    /// True when there is anything to back up: the contract, or declared databases, indices or paths.
    public var ownsData: Bool { contract || !databases.isEmpty || !indices.isEmpty || !paths.isEmpty }
}
