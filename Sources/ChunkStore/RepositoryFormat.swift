import Foundation

/// The `repository.json` object at the top of a backup repository: which format its backups are
/// written in. Plain JSON, no secrets: `{"format":"chunked","chunks":"chunks/"}` or `{"format":"plain"}`.
///
/// A repository without it is plain (every repository made before the chunked format). A chunked one
/// keeps its chunk store (``Repository``: `config`, `keys/`, `data/`, `index/`) under ``chunksPrefix``,
/// beside the backup-id folders, which keep their meaning in both formats.
public struct RepositoryFormat: Codable, Sendable, Equatable {
    /// How backups store their artifacts.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Each artifact whole, as a file or object of its own.
        case plain
        /// Artifacts cut into deduplicated, compressed, encrypted chunks in the chunk store.
        case chunked
    }

    /// The object's key at the repository's top.
    public static let key = "repository.json"
    /// Where a chunked repository's chunk store lives, below the repository's top.
    public static let chunksPrefix = "chunks/"

    public var format: Kind
    /// The chunk store's prefix (chunked only).
    public var chunks: String?

    public init(format: Kind) {
        self.format = format
        self.chunks = format == .chunked ? Self.chunksPrefix : nil
    }

    /// The repository's format as recorded in `store` (rooted at the repository's top); nil when nothing
    /// is recorded (a plain repository from before the chunked format, or an empty one).
    public static func read(from store: any ObjectStore) throws -> RepositoryFormat? {
        guard try store.exists(key) else { return nil }
        let bytes = try store.get(key)
        do {
            return try JSONDecoder().decode(RepositoryFormat.self, from: Data(bytes))
        } catch {
            throw ChunkStoreError(.unsupportedFormat, "\(store.location)/\(key) does not name a format this build knows (plain, chunked): \(error)")
        }
    }

    /// Records the format in `store`.
    public func write(to store: any ObjectStore) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try store.put(Self.key, Array(try encoder.encode(self)))
    }
}
