import Foundation

/// The `config` object: plaintext JSON naming the format version, the repository's id and the chunker
/// sizes. Not secret (it holds no key material) and not sealed: a reader checks the version before any
/// passphrase is asked for. Changing it changes only dedup efficiency, never what a blob decrypts to.
///
///     {"version":1,"id":"<64 hex>","created":"2026-05-01T10:00:00Z",
///      "chunker":{"minimum":262144,"average":1048576,"maximum":4194304},"gear":"sha256-counter-v1"}
public struct RepositoryConfig: Codable, Sendable, Equatable {
    /// The format version this build writes and reads.
    public static let currentVersion = 1
    /// The gear table this build uses (see ``GearTable``).
    public static let currentGear = "sha256-counter-v1"

    /// The repository format version.
    public var version: Int
    /// A random id (64 hex digits).
    public var id: String
    /// When the repository was initialized (ISO 8601).
    public var created: String
    /// The chunker sizes every writer must use.
    public var chunker: ChunkerParameters
    /// The gear table's name.
    public var gear: String

    init(chunker: ChunkerParameters) {
        version = Self.currentVersion
        id = BlobID(bytes: (0..<32).map { _ in UInt8.random(in: 0...255) })!.hex
        created = ISO8601DateFormatter().string(from: Date())
        self.chunker = chunker
        gear = Self.currentGear
    }
}
