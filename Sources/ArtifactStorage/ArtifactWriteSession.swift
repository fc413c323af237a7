import ChunkStore
import Foundation
import S3Client

/// One backup operation's writes into an ``ArtifactRepository``: it makes an ``ArtifactSink`` per
/// artifact (several may be written at once, each from one thread) and, in a chunked repository, shares
/// one chunk-store session among them, so they dedup against every earlier backup and each other.
///
/// - Important: Call ``commit()`` after the last artifact is finished and before writing the records
///   that name them (`metadata.json`): only then are a chunked repository's new chunks indexed. Call
///   ``close()`` once those records are written.
public final class ArtifactWriteSession: @unchecked Sendable {
    /// The repository written to.
    public let repository: ArtifactRepository
    /// What the session is for (in messages and the chunk store's lock).
    public let purpose: String
    /// The chunk store's writer (nil: the repository is plain).
    let chunked: ChunkedWriter?
    /// The session's shared lock on the chunk store, held until ``close()``: a prune cannot remove
    /// chunks the session reuses or wrote before its records name them.
    private let lock: RepositoryLockHandle?

    init(repository: ArtifactRepository, chunked: ChunkedWriter?, lock: RepositoryLockHandle?, purpose: String) {
        self.repository = repository
        self.chunked = chunked
        self.lock = lock
        self.purpose = purpose
    }

    deinit { close() }

    /// The repository's format, as the session writes it.
    public var format: RepositoryFormat.Kind { chunked == nil ? .plain : .chunked }

    /// Starts an artifact. Plain: a multipart upload to `key` (plus `plainSuffix`, e.g. `.zst`),
    /// compressed with zstd at `compressionLevel` when given. Chunked: the artifact is chunked as
    /// written (each chunk compressed at the session's level); nothing is stored under `key`, which
    /// names it in records and messages. `layout` `.tar` cuts a tar stream at its larger members' boundaries.
    public func sink(key: String, plainSuffix: String = "", compressionLevel: Int32?, partSize: Int = 8 << 20,
                     layout: ArtifactLayout = .stream) throws -> ArtifactSink {
        if let chunked {
            let writer = try repository.wrapOpen { try chunked.artifact(name: key, layout: layout) }
            return ArtifactSink(chunked: writer, key: key)
        }
        return try ArtifactSink(
            plain: repository.s3, bucket: repository.bucket, key: repository.prefix + key + plainSuffix, compressionLevel: compressionLevel,
            partSize: partSize)
    }

    /// Makes every finished artifact durable (chunked: stores the last pack and the session's index
    /// object). Plain artifacts are durable when their sink finishes; this does nothing for them.
    public func commit() throws {
        guard let chunked else { return }
        _ = try repository.wrapOpen { try chunked.commit() }
    }

    /// Ends the session: releases its lock on the chunk store (call it once the records naming the
    /// session's artifacts are written). Idempotent.
    public func close() {
        try? lock?.release()
    }

    /// Bytes new to the repository and bytes found already stored, over the session so far.
    public var statistics: (newBytes: Int64, reusedBytes: Int64) {
        guard let chunked else { return (0, 0) }
        let s = chunked.statistics
        return (s.newBytes, s.reusedBytes)
    }
}
