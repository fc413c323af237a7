import ArtifactStorage
import AutomateRPC
import BackupRepository
import ChunkStore
import Crypto
import DataTools
import Foundation
import S3Client
import SidecarProto

/// Continuous WAL archiving: the database server's `archive_command` (`automate-wal archive`) hands each
/// finished WAL file to ``archiveWAL(name:content:)``, which stores it in the repository in the format in
/// force (zstd object, or encrypted chunks) and answers only once it and its record are durable;
/// `restore_command` (`automate-wal fetch`) reads one back through ``fetchWAL(name:)``, checked against
/// its record. Layout: ``WALArchive``.
extension PGSidecar {
    /// The largest RPC frame the WAL methods need: a 16 MiB segment, its record and framing (with room
    /// for servers built with larger segments, up to 64 MiB).
    public static let maxWALFrame = (64 << 20) + (64 << 10)

    /// Throws `PERMISSION_DENIED` unless `caller` may archive or fetch WAL: trusted callers and the
    /// database server's own user (``PGSidecarConfig/walSource``); no other client service.
    func mayHandleWAL(_ caller: RPCCaller, method: String) throws {
        if case .client(let client) = caller, client.service != config.walSource {
            throw RPCError(.permissionDenied, "\(method) is for \(config.walSource) (the database server's archive_command) only, not \(client.service)")
        }
    }

    /// Stores one WAL file and its record. A retry of a file archived before with the same bytes is a
    /// success that writes nothing; other bytes under an archived name are refused (PostgreSQL then keeps
    /// the file and retries, and the operator hears of it), never overwritten.
    /// `writtenAt`: when PostgreSQL finished writing the file (nil: unknown), kept in its record.
    func archiveWAL(name: String, content: Data, writtenAt: Date? = nil) throws -> Automate_Sidecar_Pg_PGArchiveWALResponse {
        guard WALArchive.isArchivable(name) else {
            throw RPCError(.invalidArgument, "\"\(name)\" is not a WAL file name (a segment, .history, .backup or .partial file)")
        }
        let digest = hex(SHA256.hash(data: content))
        var response = Automate_Sidecar_Pg_PGArchiveWALResponse()
        do {
            let cluster = try clusterIdentifier()
            let recordKey = WALArchive.recordKey(name, cluster: cluster)
            response.cluster = cluster
            if let existing = try readObject(recordKey) {
                let record = try WALFileRecord.decode(existing, key: recordKey)
                guard record.sha256 == digest, record.size == Int64(content.count) else {
                    throw RPCError(
                        .failedPrecondition,
                        "\(name) is already archived with other bytes (\(record.size) bytes, sha256 \(record.sha256); now \(content.count) bytes, sha256 \(digest)): "
                            + "is a second server archiving into this repository? Give each cluster its own repository; nothing was overwritten")
                }
                response.alreadyArchived = true
                return response
            }
            // A repository gets its format at its first backup (the deployment-service's
            // repository_format), before that backup's base backup starts. WAL finished before then is
            // acknowledged and not stored: no recovery can need it (every base backup starts after it),
            // and stored now it would lie in clear in what becomes a chunked repository.
            guard try RepositoryFormat.read(from: artifacts.top) != nil else {
                response.skipped = true
                walSkipped.withLock { $0 += 1 }
                return response
            }
            let session = try artifacts.writeSession(purpose: "archiving WAL \(name)", compressionLevel: config.zstdLevel)
            // The shared lock holds until the record naming the chunks is stored: a prune cannot take them.
            defer { session.close() }
            let dataKey = WALArchive.dataKey(name, cluster: cluster)
            let sink = try session.sink(key: dataKey, plainSuffix: ".zst", compressionLevel: config.zstdLevel, partSize: config.partSize)
            let stored: StoredArtifact
            do {
                try content.withUnsafeBytes { try sink.write($0) }
                stored = try sink.finish()
            } catch {
                sink.abort()
                throw error
            }
            try session.commit()
            let record = WALFileRecord(
                name: name, size: Int64(content.count), sha256: digest, archivedAt: rfc3339(), writtenAt: writtenAt.map { rfc3339($0) },
                object: stored.chunks == nil ? dataKey + ".zst" : nil, objectSHA256: stored.chunks == nil ? stored.sha256 : nil, chunks: stored.chunks)
            try artifacts.s3.putObjectSync(bucket: artifacts.bucket, key: artifacts.prefix + recordKey, bytes: try record.encoded(), contentType: "application/json")
            response.storedBytes = Int64(stored.chunks?.storedBytes ?? Int64(stored.size))
            walError.withLock { $0 = "" }
            return response
        } catch {
            let e = Self.walRPCError(error, doing: "archiving \(name)")
            walError.withLock { $0 = "\(rfc3339()): \(e.message)" }
            throw e
        }
    }

    /// One archived WAL file's bytes, checked against its record's size and SHA-256. `NOT_FOUND` when the
    /// file was never archived (the end of the archive, to a restore).
    func fetchWAL(name: String, cluster: String) throws -> [UInt8] {
        var content: [UInt8] = []
        try fetchWAL(name: name, cluster: cluster) { content.append(contentsOf: $0) }
        return content
    }

    /// One archived WAL file, into the hand-off folder when there is one (`handoff`), else as bytes.
    func fetchWAL(name: String, cluster: String, handoff: WALHandoff?) throws -> FetchedWAL {
        guard let handoff else { return .bytes(try fetchWAL(name: name, cluster: cluster)) }
        return try handoff.write(name: name, cluster: cluster) { write in try fetchWAL(name: name, cluster: cluster, into: write) }
    }

    /// Streams one archived WAL file into `consume` and checks it against its record's size and SHA-256
    /// once it is all there: `DATA_LOSS` (and what `consume` got must be dropped) when it differs.
    /// `NOT_FOUND` when the file was never archived (the end of the archive, to a restore).
    func fetchWAL(name: String, cluster requested: String, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard WALArchive.isArchivable(name) else {
            throw RPCError(.invalidArgument, "\"\(name)\" is not a WAL file name (a segment, .history, .backup or .partial file)")
        }
        guard requested.isEmpty || WALArchive.isCluster(requested) else {
            throw RPCError(.invalidArgument, "\"\(requested)\" is not a cluster's system identifier (decimal digits)")
        }
        do {
            let cluster = requested.isEmpty ? try clusterIdentifier() : requested
            let recordKey = WALArchive.recordKey(name, cluster: cluster)
            guard let bytes = try readObject(recordKey) else { throw RPCError(.notFound, "\(name) is not in the WAL archive (\(recordKey))") }
            let record = try WALFileRecord.decode(bytes, key: recordKey)
            var hasher = SHA256()
            var size = 0
            try withoutActuallyEscaping(consume) { consume in
                let take: (UnsafeRawBufferPointer) throws -> Void = { piece in
                    hasher.update(bufferPointer: piece)
                    size += piece.count
                    try consume(piece)
                }
                let reader = artifacts.reader()
                if let chunks = record.chunks {
                    _ = try reader.read(key: WALArchive.dataKey(name, cluster: cluster), chunks: chunks, into: take)
                } else {
                    let object = record.object ?? WALArchive.dataKey(name, cluster: cluster) + ".zst"
                    let zstd = try ZstdDecompressor(output: take)
                    _ = try reader.read(key: object, chunks: nil) { try zstd.decompress($0) }
                    try zstd.finish()
                }
            }
            let digest = hex(hasher.finalize())
            guard size == record.size, digest == record.sha256 else {
                throw RPCError(
                    .dataLoss,
                    "\(name) read back as \(size) bytes with sha256 \(digest); its record says \(record.size) bytes, sha256 \(record.sha256): the archive is damaged there")
            }
        } catch {
            throw Self.walRPCError(error, doing: "fetching \(name)")
        }
    }

    /// The server's archiver (pg_stat_archiver and its settings) and this sidecar's last upload error.
    func walArchiveStatus() throws -> Automate_Sidecar_Pg_PGWALArchiveStatus {
        let c = try Self.connect(config.server)
        let rows = try c.query("""
            SELECT archived_count, coalesce(last_archived_wal, ''), coalesce((extract(epoch FROM last_archived_time) * 1000)::bigint, 0),
                   failed_count, coalesce(last_failed_wal, ''), coalesce((extract(epoch FROM last_failed_time) * 1000)::bigint, 0),
                   current_setting('archive_mode'), current_setting('archive_timeout'), (SELECT system_identifier::text FROM pg_control_system())
            FROM pg_stat_archiver
            """)
        guard let row = rows.first, row.count == 9 else { throw RPCError(.internal, "pg_stat_archiver returned no row") }
        var s = Automate_Sidecar_Pg_PGWALArchiveStatus()
        s.archivedCount = Int64(row[0] ?? "") ?? 0
        s.lastArchivedWal = row[1] ?? ""
        s.lastArchivedUnixMs = Int64(row[2] ?? "") ?? 0
        s.failedCount = Int64(row[3] ?? "") ?? 0
        s.lastFailedWal = row[4] ?? ""
        s.lastFailedUnixMs = Int64(row[5] ?? "") ?? 0
        s.enabled = row[6] == "on" || row[6] == "always"
        s.archiveTimeout = row[7] ?? ""
        s.cluster = row[8] ?? ""
        s.lastError = walError.withLock { $0 }
        s.skippedBeforeFirstBackup = walSkipped.withLock { Int64($0) }
        return s
    }

    /// The running server's system identifier: the folder of its archive. Asked on a kept connection; one
    /// that was lost (the server restarted, or was replaced by a restore) is made again and asked again, so
    /// the answer is always the server running now.
    func clusterIdentifier() throws -> String {
        try walConnection.withLock { connection in
            for attempt in 0..<2 {
                do {
                    let c = try connection ?? Self.connect(config.server)
                    connection = c
                    guard let id = try c.query("SELECT system_identifier::text FROM pg_control_system()").first?.first ?? nil,
                          WALArchive.isCluster(id) else {
                        throw RPCError(.internal, "the server did not give its system identifier")
                    }
                    return id
                } catch let e as DataToolsError where e.code == .database {
                    connection = nil
                    if attempt == 1 { throw RPCError(.failedPrecondition, e.message) }
                }
            }
            throw RPCError(.internal, "no connection to the server")
        }
    }

    /// The object under `key` in the repository, or nil when there is none.
    func readObject(_ key: String) throws -> [UInt8]? {
        do {
            return try artifacts.s3.getObjectSync(bucket: artifacts.bucket, key: artifacts.prefix + key)
        } catch let e as S3Error where e.isNotFound {
            return nil
        }
    }

    static func walRPCError(_ error: any Error, doing what: String) -> RPCError {
        switch error {
        case let e as RPCError: return e
        case let e as ArtifactStorageError where e.code == .integrity: return RPCError(.dataLoss, "\(what): \(e.message)")
        case let e as ArtifactStorageError: return RPCError(.unavailable, "\(what): \(e.message)")
        case let e as BackupRepository.Failure: return RPCError(.dataLoss, "\(what): \(e.message)")
        case let e as S3Error: return RPCError(.unavailable, "\(what): the repository answered \(e.description); PostgreSQL keeps the file and retries")
        case let e as HTTPTransportError: return RPCError(.unavailable, "\(what): the repository is unreachable (\(e.description)); PostgreSQL keeps the file and retries")
        default: return RPCError(.internal, "\(what): \(error)")
        }
    }
}
