import Crypto
import Foundation

/// A writing session on a repository: it loads the index once (so chunks already stored by any earlier
/// session are not stored again), makes an ``ArtifactWriter`` per artifact, packs new blobs, and writes
/// the session's index object on ``commit()``.
///
/// ```swift
/// let session = try ChunkedWriter(repository: repo)
/// let artifact = try session.artifact(name: "pg/teams.dump")
/// while let buffer = readFromPipe() { try artifact.write(buffer) }   // any buffer sizes
/// let record = try artifact.finish()      // keep it: restores need it
/// let files = try session.artifact(name: "files/app.tar", layout: .tar)   // a tar stream: large members chunked on their own
/// try session.commit()                    // only now are the records' blobs durable and indexed
/// ```
///
/// Several artifacts may be written at once (each from one thread); they share the pack being filled and
/// dedup against each other. A full pack is stored by a thread of the session's own while the next one
/// fills. Memory: up to three pack buffers (``packSize`` plus one blob each: the one filling, one
/// waiting, one being stored) for the session, up to seven chunk buffers (the maximum chunk size each) per
/// open artifact, plus the index (~100 bytes per blob).
///
/// - Important: Packs are written when full and on ``commit()``; the index object only on ``commit()``.
///   A session that ends without `commit()` leaves packs no index names: their blobs are stored again by
///   a later session, and the records it returned must not be kept.
///
/// - Important: When a prune may run on the repository, hold a shared lock
///   (``Repository/lock(exclusive:purpose:staleAfter:refreshEvery:)``) from before the session is made
///   until after its last commit: the session dedups against the index it loaded and names its packs only
///   at its commit, and a prune in between could delete blobs it reuses or packs it wrote.
public final class ChunkedWriter: @unchecked Sendable {
    /// The repository written to.
    public let repository: Repository
    /// The size at which a pack is closed and stored.
    public let packSize: Int
    /// The zstd level blobs are compressed with.
    public let compressionLevel: Int32

    /// Totals for the session so far.
    public struct Statistics: Sendable, Equatable {
        /// Plaintext bytes of chunks stored.
        public var newBytes: Int64 = 0
        /// Plaintext bytes of chunks found already stored.
        public var reusedBytes: Int64 = 0
        /// Bytes of sealed blobs added to packs.
        public var storedBytes: Int64 = 0
        /// Packs written to the store.
        public var packsWritten = 0
        /// Index objects written to the store.
        public var indexObjectsWritten = 0
    }

    private let lock = NSLock()
    // Everything below is guarded by `lock`.
    private var index: RepositoryIndex
    private var sessionIndex = RepositoryIndex()
    private var pack: [UInt8] = []
    private var packEntries: [PackEntry] = []
    private var packIDs: Set<BlobID> = []
    private var stats = Statistics()
    private let codec: ZstdCodec
    private let uploader: PackUploader

    /// Opens a session on `repository`, loading its index (or using `index` when the caller has it).
    /// `packSize` defaults to 16 MiB; `compressionLevel` to zstd's 1 (as the plain format's default).
    public init(repository: Repository, index: RepositoryIndex? = nil, packSize: Int = 16 << 20, compressionLevel: Int32 = 1) throws {
        guard packSize >= 4096, packSize <= 1 << 30 else {
            throw ChunkStoreError(.invalidArgument, "pack size \(packSize) is out of range: give 4 KiB to 1 GiB (16 MiB is the default)")
        }
        self.repository = repository
        self.packSize = packSize
        self.compressionLevel = compressionLevel
        self.index = try index ?? repository.loadIndex()
        self.codec = try ZstdCodec(level: compressionLevel)
        uploader = PackUploader(store: repository.store)
        pack.reserveCapacity(packCapacity)
    }

    deinit {
        uploader.close()
    }

    /// Starts an artifact; `name` is the caller's, for records and messages. `layout` says where chunk
    /// boundaries go besides content-defined ones (``ArtifactLayout/tar`` for a tar stream).
    public func artifact(name: String, layout: ArtifactLayout = .stream) throws -> ArtifactWriter {
        try ArtifactWriter(session: self, name: name, layout: layout)
    }

    /// Room for a full pack: the pack size, one more sealed blob, the header and trailer.
    private var packCapacity: Int { packSize + repository.config.chunker.maximum + 4096 }

    /// The session's totals so far.
    public var statistics: Statistics { lock.withLock { stats } }

    /// Stores the blob unless it is known. `id` is its id when the caller computed it already. Returns
    /// its id, whether it was new, and the sealed bytes added. `scratch` is the calling thread's, reused.
    func store(
        chunk: UnsafeRawBufferPointer, id knownID: BlobID? = nil, codec artifactCodec: ZstdCodec, scratch: inout [UInt8]
    ) throws -> (id: BlobID, new: Bool, stored: Int) {
        let id = knownID ?? repository.masterKey.blobID(of: chunk)
        let known = lock.withLock { isKnown(id) }
        if known {
            lock.withLock { stats.reusedBytes += Int64(chunk.count) }
            return (id, false, 0)
        }
        // Compress and seal outside the lock: concurrent artifacts do this in parallel.
        let sealed = try Envelope.seal(chunk, kind: .blob(id), key: repository.masterKey.encryptionKey, codec: artifactCodec, scratch: &scratch)
        return try lock.withLock {
            if isKnown(id) {
                stats.reusedBytes += Int64(chunk.count)
                return (id, false, 0)
            }
            packEntries.append(PackEntry(id: id, offset: pack.count, length: sealed.count, plaintextLength: chunk.count))
            packIDs.insert(id)
            sealed.withUnsafeBytes { pack.append(contentsOf: $0) }
            stats.newBytes += Int64(chunk.count)
            stats.storedBytes += Int64(sealed.count)
            if pack.count >= packSize { try flushPackLocked() }
            return (id, true, sealed.count)
        }
    }

    private func isKnown(_ id: BlobID) -> Bool {
        index.contains(id) || sessionIndex.contains(id) || packIDs.contains(id)
    }

    /// Closes the pack being filled and queues it to be stored (the session's index names it at once;
    /// ``commit()`` writes that index only after every queued pack is stored). Called with `lock` held.
    private func flushPackLocked() throws {
        guard !packEntries.isEmpty else { return }
        try uploader.check()
        let id = try Pack.finish(&pack, entries: packEntries, key: repository.masterKey.encryptionKey, codec: codec)
        let full = pack
        pack = []
        if let emptied = try uploader.enqueue(key: Pack.key(id), bytes: full) {
            pack = emptied
        } else {
            pack.reserveCapacity(packCapacity)
        }
        for e in packEntries {
            sessionIndex.insert(e.id, BlobLocation(pack: id, offset: e.offset, length: e.length, plaintextLength: e.plaintextLength))
        }
        stats.packsWritten += 1
        packEntries.removeAll()
        packIDs.removeAll()
    }

    /// Stores the partly filled pack and an index object naming every blob stored since the last
    /// commit. After it returns, every record finished so far can be restored. It may be called more
    /// than once (a long session can commit after each artifact); a commit with nothing new writes nothing.
    /// Waits until every full pack queued so far is stored (without a commit: nothing names them yet).
    /// For tests that need a crashed session's packs on disk.
    func waitForQueuedPacks() throws {
        try uploader.drain()
    }

    /// Returns the index object's key, or nil when nothing was new.
    @discardableResult
    public func commit() throws -> String? {
        try lock.withLock {
            try flushPackLocked()
            // The index object names the packs queued so far: they must be stored first.
            try uploader.drain()
            guard sessionIndex.count > 0 else { return nil }
            let plain = sessionIndex.serialized()
            let sealed = try plain.withUnsafeBytes { try Envelope.seal($0, kind: .index, key: repository.masterKey.encryptionKey, codec: codec) }
            let name = "index/" + BlobID(bytes: SHA256.hash(data: sealed))!.hex
            try repository.store.put(name, sealed)
            index.merge(sessionIndex)
            sessionIndex = RepositoryIndex()
            stats.indexObjectsWritten += 1
            return name
        }
    }
}
