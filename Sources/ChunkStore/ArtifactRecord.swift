/// What ``ArtifactWriter/finish()`` returns and ``ChunkedReader/restore(_:to:)`` needs: an artifact's
/// blobs in order, its size, a digest that authenticates them, and how much of it was new. Codable
/// (JSON) so the caller can keep it in its backup manifest; it holds no secret beyond blob ids and the
/// digest (which reveal nothing without the repository's key) and sizes.
public struct ArtifactRecord: Codable, Sendable, Equatable {
    /// One chunk of the artifact.
    public struct Blob: Codable, Sendable, Equatable {
        /// The blob's id.
        public var id: BlobID
        /// Its plaintext size.
        public var size: Int

        public init(id: BlobID, size: Int) {
            self.id = id
            self.size = size
        }
    }

    /// The caller's name for the artifact (`pg/teams.dump`), for messages.
    public var name: String
    /// The chunks, in order.
    public var blobs: [Blob]
    /// The artifact's size in bytes.
    public var size: Int64
    /// ``MasterKey/artifactDigest(size:blobs:)`` of `size` and `blobs` (64 lowercase hex digits): a
    /// keyed digest of the blob list, checked before a restore starts. With every blob's id checked
    /// against its plaintext as it is read, it makes the restored bytes exactly those written. (Not a
    /// hash of the plaintext: compute one while writing or reading when one is needed.)
    public var digest: String
    /// Plaintext bytes of chunks this artifact stored (not in the repository before).
    public var newBytes: Int64
    /// Plaintext bytes of chunks already in the repository (or written earlier in the session).
    public var reusedBytes: Int64
    /// Bytes added to packs for the new chunks (after compression and sealing).
    public var storedBytes: Int64

    public init(name: String, blobs: [Blob], size: Int64, digest: String, newBytes: Int64, reusedBytes: Int64, storedBytes: Int64) {
        self.name = name
        self.blobs = blobs
        self.size = size
        self.digest = digest
        self.newBytes = newBytes
        self.reusedBytes = reusedBytes
        self.storedBytes = storedBytes
    }
}
