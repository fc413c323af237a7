import ChunkStore
import Foundation

/// An artifact's chunks, as its backup's records keep them (`"chunks"` in `metadata.json`): the blob ids in
/// order, the size and SHA-256 of the whole, and what was new. See docs/repository-format.md.
public typealias ChunkRecord = ChunkStore.ArtifactRecord

/// What ``ArtifactSink/finish()`` stored.
public struct StoredArtifact: Sendable, Equatable {
    /// The object key (plain), or the artifact's name in the backup's folder (chunked: nothing is stored
    /// under it; its bytes are the chunks of ``chunks``).
    public var key: String
    /// Plain: bytes of the object (after compression). Chunked: bytes of the artifact itself.
    public var size: UInt64
    /// Plain: SHA-256 (lowercase hex) of what ``size`` counts. Chunked: the chunk record's keyed digest
    /// (of its blob list; see docs/repository-format.md), which a restore checks before it reads.
    public var sha256: String
    /// Bytes the producer wrote (before compression).
    public var rawBytes: UInt64
    /// The chunks (chunked repositories only).
    public var chunks: ChunkRecord?
    /// Bytes of the artifact not stored before (plain: all of them).
    public var newBytes: UInt64
    /// Bytes of the artifact already in the repository (plain: none).
    public var reusedBytes: UInt64

    public init(key: String, size: UInt64, sha256: String, rawBytes: UInt64, chunks: ChunkRecord?, newBytes: UInt64, reusedBytes: UInt64) {
        self.key = key
        self.size = size
        self.sha256 = sha256
        self.rawBytes = rawBytes
        self.chunks = chunks
        self.newBytes = newBytes
        self.reusedBytes = reusedBytes
    }
}

extension ChunkStore.ArtifactRecord {
    /// The record as a JSON object (for records built with `JSONSerialization`, as a search export's
    /// manifest is).
    public var jsonObject: Any? {
        (try? JSONEncoder().encode(self)).flatMap { try? JSONSerialization.jsonObject(with: $0) }
    }

    /// A record from a JSON object as ``jsonObject`` makes it; nil when it is not one.
    public init?(jsonObject: Any) {
        guard let data = try? JSONSerialization.data(withJSONObject: jsonObject),
              let record = try? JSONDecoder().decode(Self.self, from: data) else { return nil }
        self = record
    }
}
