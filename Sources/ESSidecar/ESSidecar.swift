import ArtifactStorage
import AutomateRPC
import Foundation
import Logging
import Operations
import S3Client
import SidecarProto

public typealias ESStatus = Automate_Sidecar_Es_ESStatus
public typealias ESIndexStatus = Automate_Sidecar_Es_ESIndexStatus

/// What an es-sidecar operation leaves when it completes: per index, what was exported or restored.
public struct ESOutcome: Sendable {
    public struct Index: Sendable {
        public var name: String
        public var docs: Int64
        public var size: Int64
        public var sha256: String
    }
    public var indices: [Index]
}

/// The es-sidecar: index exports and imports (export mode) or cluster snapshots and restores (snapshot
/// mode) as operations of an ``OperationRegistry``, watched as streams and cancellable.
public final class ESSidecar: Sendable {
    /// The name in every error a caller sees.
    public static let name = "es-sidecar-service"
    public let config: ESSidecarConfig
    let logger: Logger
    /// Every operation since the sidecar started.
    public let operations = OperationRegistry<ESOutcome>(owner: ESSidecar.name)
    public let engine: SearchEngine
    public let snapshots: SnapshotMode
    /// The repository as exports write it (plain or chunked) and imports read it.
    public let artifacts: ArtifactRepository

    public init(config: ESSidecarConfig, logger: Logger, transport: (any RESTTransport)? = nil) {
        self.config = config
        self.logger = logger
        self.engine = SearchEngine(url: config.searchURL, access: config.searchAccess)
        self.artifacts = ArtifactRepository(s3: config.s3, bucket: config.bucket, passphrase: config.passphrase)
        self.snapshots = SnapshotMode(transport: transport ?? SearchEngine(url: config.searchURL, access: config.searchAccess), bucket: config.bucket, clientName: config.s3ClientName)
    }

    public static func exportPrefix(service: String, snapshot: String) -> String {
        "automate-elasticsearch-data/\(service)/\(snapshot)/"
    }

    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") } && !s.hasPrefix(".")
    }

    func exportStore(service: String, snapshot: String) -> S3ExportStore {
        S3ExportStore(artifacts: artifacts, prefix: Self.exportPrefix(service: service, snapshot: snapshot), partSize: config.partSize)
    }

    func rpcError(_ error: Error) -> RPCError {
        if let e = error as? RPCError { return e }
        if let e = error as? OperationError { return RPCError(e) }
        if let e = error as? S3Error { return RPCError(e.isNotFound ? .notFound : .unavailable, e.description) }
        if let e = error as? SearchError {
            switch e.status {
            case 0: return RPCError(.unavailable, e.description)
            case 404: return RPCError(.notFound, e.description)
            case 409: return RPCError(.alreadyExists, e.description)
            case 400: return RPCError(.invalidArgument, e.description)
            default: return RPCError(.internal, e.description)
            }
        }
        return RPCError(.internal, "\(error)")
    }

    func blocking<T: Sendable>(_ name: String = "es.blocking", _ body: @escaping @Sendable () throws -> T) async throws -> T {
        do { return try await runBlocking(name) { _ in try body() } } catch { throw rpcError(error) }
    }

    /// The status of an operation; NOT_FOUND (naming this sidecar) when it is unknown here.
    public func status(_ id: String) async throws -> ESStatus {
        do { return wireStatus(try await operations.status(id)) } catch { throw rpcError(error) }
    }

    /// Stops an operation (its upload is aborted); returns the status once it ended (or after 10 s, still
    /// running, if it has not). NOT_FOUND when unknown.
    public func cancel(_ id: String) async throws -> ESStatus {
        logger.notice("operation \(id): cancel requested")
        do { return wireStatus(try await operations.cancel(id, waitingUpTo: .seconds(10))) } catch { throw rpcError(error) }
    }

    // MARK: RPC

    public func register(on server: RPCServer) {
        server.register(ESSidecarService.createRepo) { [self] (req: Automate_Sidecar_Es_ESCreateRepoRequest, context) -> Automate_Sidecar_Es_ESCreateRepoResponse in
            try context.caller.mayActFor(service: req.service, method: "CreateRepo")
            guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
            let config = self.config, snapshots = self.snapshots
            return try await blocking {
                var r = Automate_Sidecar_Es_ESCreateRepoResponse()
                switch config.mode {
                case .export:
                    r.created = try config.s3.createBucketSync(config.bucket)
                    r.repository = "s3://\(config.bucket)/automate-elasticsearch-data/\(req.service)/"
                case .snapshot:
                    r.repository = try snapshots.createRepository(service: req.service)
                    r.created = true
                }
                return r
            }
        }
        server.register(ESSidecarService.deleteRepo) { [self] (req: Automate_Sidecar_Es_ESDeleteRepoRequest, context) -> Automate_Sidecar_Es_ESDeleteRepoResponse in
            try context.caller.mayActFor(service: req.service, method: "DeleteRepo")
            guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
            let config = self.config, snapshots = self.snapshots
            return try await blocking {
                var r = Automate_Sidecar_Es_ESDeleteRepoResponse()
                switch config.mode {
                case .export:
                    r.objectsDeleted = Int64(try config.s3.deletePrefixSync(bucket: config.bucket, prefix: "automate-elasticsearch-data/\(req.service)/"))
                case .snapshot:
                    try snapshots.deleteRepository(service: req.service)
                }
                return r
            }
        }
        server.register(ESSidecarService.createSnapshot) { [self] (req: Automate_Sidecar_Es_ESCreateSnapshotRequest, context) -> Automate_Sidecar_Es_ESOperation in
            try context.caller.mayActFor(service: req.service, method: "CreateSnapshot")
            var r = Automate_Sidecar_Es_ESOperation()
            r.operationID = try await startSnapshot(req)
            return r
        }
        server.register(ESSidecarService.deleteSnapshot) { [self] (req: Automate_Sidecar_Es_ESDeleteSnapshotRequest, context) -> Automate_Sidecar_Es_ESDeleteSnapshotResponse in
            try context.caller.mayActFor(service: req.service, method: "DeleteSnapshot")
            guard Self.validName(req.service), Self.validName(req.snapshot) else { throw RPCError(.invalidArgument, "bad service or snapshot name") }
            let config = self.config, snapshots = self.snapshots
            return try await blocking {
                var r = Automate_Sidecar_Es_ESDeleteSnapshotResponse()
                switch config.mode {
                case .export:
                    r.objectsDeleted = Int64(try config.s3.deletePrefixSync(bucket: config.bucket, prefix: Self.exportPrefix(service: req.service, snapshot: req.snapshot)))
                case .snapshot:
                    try snapshots.deleteSnapshot(service: req.service, snapshot: req.snapshot)
                }
                return r
            }
        }
        server.register(ESSidecarService.restoreSnapshot) { [self] (req: Automate_Sidecar_Es_ESRestoreSnapshotRequest, context) -> Automate_Sidecar_Es_ESOperation in
            try context.caller.mayActFor(service: req.service, method: "RestoreSnapshot")
            var r = Automate_Sidecar_Es_ESOperation()
            r.operationID = try await startRestore(req)
            return r
        }
        server.register(ESSidecarService.snapshotStatus) { [self] (req: Automate_Sidecar_Es_ESStatusRequest, _) -> ESStatus in
            try await status(req.operationID)
        }
        server.register(ESSidecarService.watchStatus) { [self] (req: Automate_Sidecar_Es_ESStatusRequest, writer: RPCResponseWriter<ESStatus>, _) in
            try await operations.stream(req.operationID, to: writer) { self.wireStatus($0) }
        }
        server.register(ESSidecarService.cancel) { [self] (req: Automate_Sidecar_Es_ESStatusRequest, _) -> ESStatus in
            try await cancel(req.operationID)
        }
    }
}
