import ChunkStore
import Crypto
import DataTools
import Foundation
import S3Client

/// Where one artifact's bytes go as a producer (pg_dump, tar, a search export) writes them: a multipart
/// upload (plain, optionally through zstd) or the chunk store (chunked). Use from one thread; end with
/// ``finish()`` or ``abort()``.
public final class ArtifactSink {
    private enum Target {
        /// The upload, and what `write` feeds: the compressor, or the upload itself (hashed and counted).
        case plain(MultipartWriter, ZstdCompressor?, upload: (UnsafeRawBufferPointer) throws -> Void)
        case chunked(ChunkStore.ArtifactWriter)
    }

    private let target: Target
    /// The artifact's key (plain: the object it is uploaded to).
    public let key: String
    /// Bytes written so far (before compression).
    public private(set) var rawBytes: UInt64 = 0
    private let state: State

    /// What the compressor's callback updates (kept apart so the callback holds no reference to self).
    private final class State {
        var hasher = SHA256()
        var stored: UInt64 = 0
    }

    init(plain s3: S3Client, bucket: String, key: String, compressionLevel: Int32?, partSize: Int) throws {
        self.key = key
        let writer: MultipartWriter
        do { writer = try MultipartWriter(client: s3, bucket: bucket, key: key, partSize: partSize) } catch {
            throw ArtifactStorageError(.storage, "cannot start the upload of \(key) to s3://\(bucket): \(error)")
        }
        let state = State()
        self.state = state
        // What is stored is hashed and counted on its way to the upload.
        let upload: (UnsafeRawBufferPointer) throws -> Void = { chunk in
            state.hasher.update(bufferPointer: chunk)
            state.stored += UInt64(chunk.count)
            try writer.write(chunk)
        }
        var compressor: ZstdCompressor? = nil
        if let compressionLevel {
            do { compressor = try ZstdCompressor(level: compressionLevel, output: upload) } catch {
                writer.abort()
                throw error
            }
        }
        target = .plain(writer, compressor, upload: upload)
    }

    init(chunked writer: ChunkStore.ArtifactWriter, key: String) {
        self.key = key
        state = State()
        target = .chunked(writer)
    }

    /// Bytes of this artifact new to the repository so far (plain: every byte written).
    public var newBytes: UInt64 {
        switch target {
        case .plain: return rawBytes
        case .chunked(let w): return UInt64(max(0, w.newBytes))
        }
    }

    /// Bytes of this artifact found already stored so far (plain: none).
    public var reusedBytes: UInt64 {
        switch target {
        case .plain: return 0
        case .chunked(let w): return UInt64(max(0, w.reusedBytes))
        }
    }

    /// Adds the next bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        rawBytes += UInt64(bytes.count)
        switch target {
        case .plain(_, let compressor, let upload):
            if let compressor { try compressor.compress(bytes) } else { try upload(bytes) }
        case .chunked(let writer):
            do { try writer.write(bytes) } catch let e as ChunkStoreError {
                throw ArtifactStorageError(.storage, "storing \(key) in the chunk store: \(e.message)")
            }
        }
    }

    /// Completes the artifact. Plain: the object exists once this returns. Chunked: its chunks are
    /// durable once the session commits.
    public func finish() throws -> StoredArtifact {
        switch target {
        case .plain(let writer, let compressor, _):
            do {
                try compressor?.finish()
                _ = try writer.finish()
            } catch {
                writer.abort()
                throw error
            }
            return StoredArtifact(
                key: key, size: state.stored, sha256: Self.hex(state.hasher.finalize()), rawBytes: rawBytes, chunks: nil,
                newBytes: rawBytes, reusedBytes: 0)
        case .chunked(let writer):
            let record: ChunkRecord
            do { record = try writer.finish() } catch let e as ChunkStoreError {
                throw ArtifactStorageError(.storage, "storing \(key) in the chunk store: \(e.message)")
            }
            return StoredArtifact(
                key: key, size: UInt64(record.size), sha256: record.digest, rawBytes: rawBytes, chunks: record,
                newBytes: UInt64(max(0, record.newBytes)), reusedBytes: UInt64(max(0, record.reusedBytes)))
        }
    }

    /// Abandons the artifact: a plain upload is aborted (nothing appears under its key); chunks already
    /// stored stay unreferenced until `automate backup prune`.
    public func abort() {
        if case .plain(let writer, _, _) = target { writer.abort() }
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
