import ChunkStore
import Foundation
import S3Client

/// Reads artifacts back from an ``ArtifactRepository``, whichever format each was written in: a record
/// with chunks is read from the chunk store (every chunk authenticated, the whole checked against the
/// record's size and SHA-256 at the end), any other from its object. Use from one thread.
///
/// - Important: A failure throws after earlier bytes were already handed to the sink: treat what the
///   sink received as garbage then (restore into a scratch place, swap in only after success).
public final class ArtifactReader {
    /// The repository read from.
    public let repository: ArtifactRepository
    private var chunkReader: ChunkedReader?
    /// A shared lock while chunks are read: a prune cannot move or remove them under the reader.
    private var lock: RepositoryLockHandle?

    init(repository: ArtifactRepository) {
        self.repository = repository
    }

    deinit { try? lock?.release() }

    /// Streams the artifact to `sink`; returns the bytes handed over. `key` is the object (plain) or the
    /// artifact's name (chunked, for messages).
    @discardableResult
    public func read(key: String, chunks: ChunkRecord?, into sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        guard let chunks else {
            return try repository.s3.getObjectSync(bucket: repository.bucket, key: repository.prefix + key, into: sink)
        }
        let reader = try chunkedReader()
        var total: Int64 = 0
        do {
            try reader.restore(chunks) { bytes in
                total += Int64(bytes.count)
                try sink(bytes)
            }
        } catch let e as ChunkStoreError {
            throw ArtifactStorageError(e.code == .damaged || e.code == .objectMissing ? .integrity : .storage, "\(key): \(e.message)")
        }
        return total
    }

    private func chunkedReader() throws -> ChunkedReader {
        if let chunkReader { return chunkReader }
        let store = try repository.openChunked()
        lock = try repository.lock(store, purpose: "a restore reading chunks")
        let reader = try repository.wrapOpen { try ChunkedReader(repository: store) }
        chunkReader = reader
        return reader
    }
}
