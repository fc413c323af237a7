import ArtifactStorage
import AutomateRPC
import Crypto
import DataTools
import Foundation
import Logging
import Operations
import S3Client
import SidecarProto
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public typealias PGStatus = Automate_Sidecar_Pg_PGStatus
public typealias PGDatabaseStatus = Automate_Sidecar_Pg_PGDatabaseStatus
public typealias PGPhase = Automate_Sidecar_Pg_PGPhase

/// What a pg-sidecar operation leaves when it completes: the server's version and, per database, what
/// was dumped or restored.
public struct PGOutcome: Sendable {
    public var serverVersion: String
    public var databases: [PGBackupMetadata.Database]
}

func rfc3339(_ date: Date = Date()) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}

func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

/// The pg-sidecar: dumps (pg_dump → zstd → multipart upload) and restores (download → zstd → pg_restore
/// into a temporary database, verified, renamed) as operations of an ``OperationRegistry``; each runs on
/// the ``BlockingPool`` and cancelling it kills its tool's process group and aborts its upload.
public final class PGSidecar: Sendable {
    /// The name in every error a caller sees.
    public static let name = "pg-sidecar-service"
    public let config: PGSidecarConfig
    let logger: Logger
    /// Every operation since the sidecar started.
    public let operations = OperationRegistry<PGOutcome>(owner: PGSidecar.name)
    /// The repository as backups write it (plain or chunked) and restores read it.
    public let artifacts: ArtifactRepository
    /// The last WAL upload's failure (with its time), empty after a success: shown by WALArchiveStatus.
    let walError = Mutex("")
    /// WAL files acknowledged without being stored because the repository has had no backup yet.
    let walSkipped = Mutex(0)
    /// The connection archiving asks for the server's system identifier on, kept between WAL files (a
    /// connection per file is a server process started and ended every few seconds of heavy writing).
    let walConnection = Mutex<PGConnection?>(nil)
    /// Threads for archiving WAL, at a lower CPU priority (nice 10) than the database's own work: under
    /// load, compressing and hashing a finished segment waits for the transactions that made it, and
    /// catches up when they pause (PostgreSQL keeps the segment until then).
    let walArchivePool = BlockingPool(name: "pg.wal-archive", maxThreads: 2, niceness: 10)
    /// Reads ahead of a recovery's restore_command (``WALPrefetch``).
    let walPrefetch = WALPrefetch()
    /// Where a recovery's WAL files are handed to `automate-wal fetch` (``WALHandoff``); nil: through the socket.
    let walHandoff: WALHandoff?

    public init(config: PGSidecarConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        if let folder = config.walHandoffFolder {
            do {
                walHandoff = try WALHandoff(folder: folder)
            } catch {
                logger.warning("\(error); a recovery's WAL files go through the socket instead")
                walHandoff = nil
            }
        } else {
            walHandoff = nil
        }
        artifacts = ArtifactRepository(s3: config.s3, bucket: config.bucket, passphrase: config.passphrase)
        signal(SIGPIPE, SIG_IGN)  // a pg_restore that ends early must be an EPIPE, not our death
    }

    static func validID(_ s: String) -> Bool { s.count == 14 && s.allSatisfy(\.isNumber) }
    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    public func dataPrefix(backupID: String, service: String) -> String { "\(backupID)/\(service)/pg_data/" }

    // MARK: RPC

    public func register(on server: RPCServer) {
        server.register(PGSidecarService.createRepo) { [self] (req: Automate_Sidecar_Pg_PGCreateRepoRequest, _) -> Automate_Sidecar_Pg_PGCreateRepoResponse in
            let s3 = config.s3, bucket = req.bucket.isEmpty ? config.bucket : req.bucket
            var r = Automate_Sidecar_Pg_PGCreateRepoResponse()
            r.created = try await wrapS3 { try await runBlocking("pg.create-repo") { _ in try s3.createBucketSync(bucket) } }
            return r
        }
        server.register(PGSidecarService.deleteRepo) { [self] (req: Automate_Sidecar_Pg_PGDeleteRepoRequest, _) -> Automate_Sidecar_Pg_PGDeleteRepoResponse in
            guard !req.prefix.isEmpty else { throw RPCError(.invalidArgument, "DeleteRepo needs a prefix") }
            let s3 = config.s3, bucket = req.bucket.isEmpty ? config.bucket : req.bucket
            var r = Automate_Sidecar_Pg_PGDeleteRepoResponse()
            r.objectsDeleted = Int64(try await wrapS3 { try await runBlocking("pg.delete") { _ in try s3.deletePrefixSync(bucket: bucket, prefix: req.prefix) } })
            return r
        }
        server.register(PGSidecarService.listDatabases) { [self] (_: Automate_Sidecar_Pg_PGListDatabasesRequest, _) -> Automate_Sidecar_Pg_PGListDatabasesResponse in
            let server = config.server
            return try await runBlocking("pg.list") { _ in
                let c = try Self.connect(server)
                var r = Automate_Sidecar_Pg_PGListDatabasesResponse()
                r.databases = try c.listDatabases()
                r.serverVersion = c.serverVersion
                return r
            }
        }
        server.register(PGSidecarService.createBackup) { [self] (req: Automate_Sidecar_Pg_PGCreateBackupRequest, context) -> Automate_Sidecar_Pg_PGOperation in
            var r = Automate_Sidecar_Pg_PGOperation()
            r.operationID = try await startBackup(req, caller: context.caller)
            return r
        }
        server.register(PGSidecarService.deleteBackup) { [self] (req: Automate_Sidecar_Pg_PGDeleteBackupRequest, context) -> Automate_Sidecar_Pg_PGDeleteBackupResponse in
            guard Self.validID(req.backupID), Self.validName(req.service) else {
                throw RPCError(.invalidArgument, "backup_id must be yyyyMMddHHmmss and service [a-z0-9-_]")
            }
            try context.caller.mayActFor(service: req.service, method: "DeleteBackup")
            let s3 = config.s3, bucket = config.bucket, prefix = dataPrefix(backupID: req.backupID, service: req.service)
            var r = Automate_Sidecar_Pg_PGDeleteBackupResponse()
            r.objectsDeleted = Int64(try await wrapS3 { try await runBlocking("pg.delete") { _ in try s3.deletePrefixSync(bucket: bucket, prefix: prefix) } })
            return r
        }
        server.register(PGSidecarService.restore) { [self] (req: Automate_Sidecar_Pg_PGRestoreRequest, context) -> Automate_Sidecar_Pg_PGOperation in
            var r = Automate_Sidecar_Pg_PGOperation()
            r.operationID = try await startRestore(req, caller: context.caller)
            return r
        }
        server.register(PGSidecarService.status) { [self] (req: Automate_Sidecar_Pg_PGStatusRequest, _) -> PGStatus in
            try await status(req.operationID)
        }
        server.register(PGSidecarService.watchStatus) { [self] (req: Automate_Sidecar_Pg_PGStatusRequest, writer: RPCResponseWriter<PGStatus>, _) in
            try await operations.stream(req.operationID, to: writer, Self.status)
        }
        server.register(PGSidecarService.cancel) { [self] (req: Automate_Sidecar_Pg_PGStatusRequest, _) -> PGStatus in
            try await cancel(req.operationID)
        }
        server.register(PGSidecarService.createBaseBackup) { [self] (req: Automate_Sidecar_Pg_PGCreateBaseBackupRequest, context) -> Automate_Sidecar_Pg_PGOperation in
            var r = Automate_Sidecar_Pg_PGOperation()
            r.operationID = try await startBaseBackup(req, caller: context.caller)
            return r
        }
        server.register(PGSidecarService.archiveWAL) { [self] (req: Automate_Sidecar_Pg_PGArchiveWALRequest, context) -> Automate_Sidecar_Pg_PGArchiveWALResponse in
            try mayHandleWAL(context.caller, method: "ArchiveWAL")
            let written = req.writtenUnixMs > 0 ? Date(timeIntervalSince1970: Double(req.writtenUnixMs) / 1000) : nil
            // A client hands over only files of its own; trusted callers (operators, tests) any.
            let owner: UInt32? = context.caller == .trusted ? nil : (context.peer?.uid ?? UInt32.max)
            return try await walArchivePool.run("pg.wal-archive") { [self] _ in
                var content = req.content
                if !req.handoffName.isEmpty {
                    guard let walHandoff else {
                        throw RPCError(.failedPrecondition, "this pg-sidecar has no WAL hand-off folder (no data folder): send the file's content")
                    }
                    content = try walHandoff.takeArchiveCopy(named: req.handoffName, owner: owner)
                }
                return try archiveWAL(name: req.name, content: content, writtenAt: written)
            }
        }
        server.register(PGSidecarService.fetchWAL) { [self] (req: Automate_Sidecar_Pg_PGFetchWALRequest, context) -> Automate_Sidecar_Pg_PGFetchWALResponse in
            try mayHandleWAL(context.caller, method: "FetchWAL")
            var r = Automate_Sidecar_Pg_PGFetchWALResponse()
            let handoff = req.acceptHandoff ? walHandoff : nil
            // A recovery names its cluster and asks for one segment after another: read ahead for it.
            let fetched = try await runBlocking("pg.wal-fetch") { [self] _ in
                req.cluster.isEmpty
                    ? try fetchWAL(name: req.name, cluster: req.cluster, handoff: handoff)
                    : try walPrefetch.get(name: req.name, cluster: req.cluster) { [self] in try fetchWAL(name: $0, cluster: $1, handoff: handoff) }
            }
            r.size = Int64(fetched.size)
            if case .handoff(let path, _) = fetched, req.acceptHandoff {
                r.handoffPath = path
            } else {
                // Read ahead into the folder for a caller that takes bytes (an older automate-wal).
                r.content = Data(try fetched.takeBytes())
            }
            let (requests, ahead) = walPrefetch.counts
            if !req.cluster.isEmpty && requests % 100 == 0 {
                logger.info("recovery: \(requests) WAL files fetched, \(ahead) of them read ahead")
            }
            return r
        }
        server.register(PGSidecarService.walArchiveStatus) { [self] (_: Automate_Sidecar_Pg_PGWALArchiveStatusRequest, _) -> Automate_Sidecar_Pg_PGWALArchiveStatus in
            try await runBlocking("pg.wal-status") { [self] _ in try walArchiveStatus() }
        }
        server.register(PGSidecarService.readBaseBackup) { [self] (req: Automate_Sidecar_Pg_PGReadBaseBackupRequest, writer: RPCResponseWriter<Automate_Sidecar_Pg_PGBaseBackupBytes>, context) in
            try mayHandleWAL(context.caller, method: "ReadBaseBackup")
            let relay = ByteRelay(capacity: 4)
            defer { relay.close() }
            let reading = Task { [self] in
                do {
                    try await runBlocking("pg.base-read") { [self] _ in try readBaseBackup(backupID: req.backupID, service: req.service, into: relay) }
                    relay.finish()
                } catch {
                    relay.finish(throwing: error)
                }
            }
            defer { reading.cancel() }
            for try await piece in relay.pieces {
                var message = Automate_Sidecar_Pg_PGBaseBackupBytes()
                message.data = Data(piece)
                try await writer.send(message)
                relay.consumed()
            }
        }
        server.register(PGSidecarService.clusterRecovery) { [self] (_: Automate_Sidecar_Pg_PGClusterRecoveryRequest, _) -> Automate_Sidecar_Pg_PGClusterRecovery in
            try await runBlocking("pg.recovery-status") { [self] _ in try clusterRecovery() }
        }
    }

    /// The status of an operation; NOT_FOUND (naming this sidecar) when it is unknown here.
    public func status(_ id: String) async throws -> PGStatus {
        do { return Self.status(try await operations.status(id)) } catch { throw Self.rpcError(error) }
    }

    /// Cancels an operation: its tool's process group is killed and its upload aborted. Returns the
    /// status once it ended (or after 10 s, still running, if it has not). NOT_FOUND when unknown.
    public func cancel(_ id: String) async throws -> PGStatus {
        logger.notice("operation \(id): cancel requested")
        do { return Self.status(try await operations.cancel(id, waitingUpTo: .seconds(10))) } catch { throw Self.rpcError(error) }
    }

    static func rpcError(_ error: any Error) -> RPCError {
        if let e = error as? RPCError { return e }
        if let e = error as? OperationError { return RPCError(e) }
        return RPCError(.internal, "\(PGSidecar.name): \(error)")
    }

    func wrapS3<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as S3Error {
            throw RPCError(e.isNotFound ? .notFound : .unavailable, e.description)
        } catch let e as HTTPTransportError {
            throw RPCError(.unavailable, e.description)
        }
    }

    static func connect(_ server: PGServer, database: String = "postgres") throws -> PGConnection {
        do { return try PGConnection(server, database: database) } catch let e as DataToolsError {
            throw RPCError(.failedPrecondition, e.message)
        }
    }

    /// Aborts multipart uploads of dumps that a killed sidecar left open (call at start, before serving:
    /// no upload of this process is running then). Returns how many.
    @discardableResult
    public func abortStaleUploads() throws -> Int {
        let open = try config.s3.listMultipartUploadsSync(bucket: config.bucket).filter { $0.key.contains("/pg_data/") && $0.key.hasSuffix(".fc.zst") }
        for u in open { try? config.s3.abortMultipartUploadSync(bucket: config.bucket, key: u.key, uploadID: u.uploadID) }
        return open.count
    }

    /// `tool` of the installed client tools that work with a server of `major` (its own major's, else
    /// the oldest newer one); throws naming both versions when they are all older than the server.
    func toolPath(_ tool: String, major: Int) throws -> String {
        try PGClientTools.binDirectory(forServer: major, serverVersion: String(major), root: config.pgBinRoot) + "/" + tool
    }

    func toolArgs(database: String) -> [String] {
        ["-h", config.server.host, "-p", String(config.server.port), "-U", config.server.user, "--no-password", "-d", database]
    }
}
