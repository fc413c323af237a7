import AutomateRPC
import Foundation
import Logging
import S3Client
import SidecarProto

public typealias ESStatus = Automate_Sidecar_Es_ESStatus
public typealias ESIndexStatus = Automate_Sidecar_Es_ESIndexStatus

public enum ESMode: String, Sendable {
    case export
    case snapshot
}

public struct ESSidecarConfig: Sendable {
    public var socketPath: String
    public var searchURL: String
    public var mode: ESMode
    public var s3: S3Client
    public var bucket: String
    /// Snapshot mode: the engine's s3 client name (`s3.client.<name>.*` in its config/keystore).
    public var s3ClientName: String = "automate"
    public var partSize: Int = 8 << 20

    public init(socketPath: String, searchURL: String, mode: ESMode, s3: S3Client, bucket: String) {
        self.socketPath = socketPath
        self.searchURL = searchURL
        self.mode = mode
        self.s3 = s3
        self.bucket = bucket
    }

    /// From the service environment: `AUTOMATE_SERVICE_SOCKET`, `AUTOMATE_CFG_SEARCH_URL`, `_MODE`
    /// (export | snapshot; default export, snapshot when `_EXTERNAL` is true), `_S3_ENDPOINT`, `_S3_REGION`,
    /// `_S3_BUCKET`, `_S3_CREDENTIALS`, `_S3_CLIENT_NAME`, `_PART_SIZE_MIB`.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> ESSidecarConfig {
        func cfg(_ k: String) -> String? { env["AUTOMATE_CFG_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let socket = env["AUTOMATE_SERVICE_SOCKET"] else { throw SearchError(status: 0, message: "AUTOMATE_SERVICE_SOCKET is not set") }
        guard let url = cfg("SEARCH_URL") else { throw SearchError(status: 0, message: "config search_url is not set") }
        // The supervisor hands gateway users AUTOMATE_GATEWAY_* ([backup] gateway = true); config overrides.
        func gw(_ k: String) -> String? { env["AUTOMATE_GATEWAY_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let endpoint = cfg("S3_ENDPOINT") ?? gw("ENDPOINT") else {
            throw SearchError(status: 0, message: "no S3 endpoint: set config s3_endpoint or run with [backup] gateway = true")
        }
        let external = cfg("EXTERNAL") == "true"
        guard let mode = ESMode(rawValue: cfg("MODE") ?? (external ? "snapshot" : "export")) else {
            throw SearchError(status: 0, message: "config mode must be export or snapshot")
        }
        var creds: S3Credentials? = nil
        if let path = cfg("S3_CREDENTIALS") {
            creds = try S3Credentials.load(path: path)
        } else if let id = gw("ACCESS_KEY_ID"), let secret = gw("SECRET_ACCESS_KEY") {
            creds = S3Credentials(accessKeyID: id, secretAccessKey: secret)
        }
        var c = ESSidecarConfig(
            socketPath: socket, searchURL: url, mode: mode,
            s3: S3Client(endpoint: endpoint, region: cfg("S3_REGION") ?? gw("REGION") ?? "us-east-1", credentials: creds),
            bucket: cfg("S3_BUCKET") ?? gw("BUCKET") ?? "backups")
        if let n = cfg("S3_CLIENT_NAME") { c.s3ClientName = n }
        if let p = cfg("PART_SIZE_MIB").flatMap(Int.init) { c.partSize = max(5, p) << 20 }
        return c
    }
}

final class ESOperationStore: @unchecked Sendable {
    private let lock = NSLock()
    private var statuses: [String: ESStatus] = [:]
    func insert(_ s: ESStatus) { lock.withLock { statuses[s.operationID] = s } }
    func get(_ id: String) -> ESStatus? { lock.withLock { statuses[id] } }
    func update(_ id: String, _ body: (inout ESStatus) -> Void) {
        lock.withLock { if var s = statuses[id] { body(&s); statuses[id] = s } }
    }
    func updateIndex(_ id: String, _ name: String, _ body: (inout ESIndexStatus) -> Void) {
        update(id) { s in if let i = s.indices.firstIndex(where: { $0.index == name }) { body(&s.indices[i]) } }
    }
}

public final class ESSidecar: Sendable {
    public let config: ESSidecarConfig
    let logger: Logger
    let store = ESOperationStore()
    public let engine: SearchEngine
    public let snapshots: SnapshotMode

    public init(config: ESSidecarConfig, logger: Logger, transport: (any RESTTransport)? = nil) {
        self.config = config
        self.logger = logger
        self.engine = SearchEngine(url: config.searchURL)
        self.snapshots = SnapshotMode(transport: transport ?? SearchEngine(url: config.searchURL), bucket: config.bucket, clientName: config.s3ClientName)
    }

    public static func exportPrefix(service: String, snapshot: String) -> String {
        "automate-elasticsearch-data/\(service)/\(snapshot)/"
    }

    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") } && !s.hasPrefix(".")
    }

    func exportStore(service: String, snapshot: String) -> S3ExportStore {
        S3ExportStore(s3: config.s3, bucket: config.bucket, prefix: Self.exportPrefix(service: service, snapshot: snapshot), partSize: config.partSize)
    }

    func rpcError(_ error: Error) -> RPCError {
        if let e = error as? RPCError { return e }
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

    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do { return try await runOnOwnThread(body) } catch { throw rpcError(error) }
    }

    func newOperation(kind: String, snapshot: String, indices: [String]) -> String {
        let id = "\(kind)-\(snapshot)-" + (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        var s = ESStatus()
        s.operationID = id
        s.kind = kind
        s.mode = config.mode.rawValue
        s.phase = .pending
        s.startedAt = rfc3339()
        s.indices = indices.map { n in var x = ESIndexStatus(); x.index = n; x.phase = .pending; return x }
        store.insert(s)
        return id
    }

    func background(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let t = Thread(block: body)
        t.name = name
        t.start()
    }

    public func status(_ id: String) -> ESStatus? { store.get(id) }

    // MARK: RPC

    public func register(on server: RPCServer) {
        server.registerUnary("CreateRepo") { [self] (req: Automate_Sidecar_Es_ESCreateRepoRequest, _) -> Automate_Sidecar_Es_ESCreateRepoResponse in
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
        server.registerUnary("DeleteRepo") { [self] (req: Automate_Sidecar_Es_ESDeleteRepoRequest, _) -> Automate_Sidecar_Es_ESDeleteRepoResponse in
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
        server.registerUnary("CreateSnapshot") { [self] (req: Automate_Sidecar_Es_ESCreateSnapshotRequest, _) -> Automate_Sidecar_Es_ESOperation in
            var r = Automate_Sidecar_Es_ESOperation()
            r.operationID = try await startSnapshot(req)
            return r
        }
        server.registerUnary("DeleteSnapshot") { [self] (req: Automate_Sidecar_Es_ESDeleteSnapshotRequest, _) -> Automate_Sidecar_Es_ESDeleteSnapshotResponse in
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
        server.registerUnary("RestoreSnapshot") { [self] (req: Automate_Sidecar_Es_ESRestoreSnapshotRequest, _) -> Automate_Sidecar_Es_ESOperation in
            var r = Automate_Sidecar_Es_ESOperation()
            r.operationID = try await startRestore(req)
            return r
        }
        server.registerUnary("SnapshotStatus") { [self] (req: Automate_Sidecar_Es_ESStatusRequest, _) -> ESStatus in
            guard let s = store.get(req.operationID) else { throw RPCError(.notFound, "no operation \"\(req.operationID)\"") }
            return s
        }
    }

    func resolveIndices(_ patterns: [String]) throws -> [String] {
        let all = try engine.listIndices()
        if patterns.isEmpty { return all }
        var out: [String] = []
        for p in patterns {
            if p.hasSuffix("*") {
                out += all.filter { $0.hasPrefix(String(p.dropLast())) }
            } else {
                guard all.contains(p) else { throw SearchError(status: 404, message: "index \"\(p)\" does not exist") }
                out.append(p)
            }
        }
        var seen = Set<String>()
        return out.filter { seen.insert($0).inserted }
    }

    // MARK: snapshot (export or _snapshot)

    public func startSnapshot(_ req: Automate_Sidecar_Es_ESCreateSnapshotRequest) async throws -> String {
        guard Self.validName(req.service), Self.validName(req.snapshot) else { throw RPCError(.invalidArgument, "bad service or snapshot name") }
        let indices = try await blocking { [self] in try resolveIndices(req.indices) }
        let id = newOperation(kind: "snapshot", snapshot: req.snapshot, indices: indices)
        store.update(id) { $0.phase = .running }
        switch config.mode {
        case .export:
            background("es.export") { [self] in runExport(id, req, indices) }
        case .snapshot:
            do {
                try await blocking { [self] in try snapshots.createSnapshot(service: req.service, snapshot: req.snapshot, indices: indices) }
            } catch {
                store.update(id) { $0.phase = .failed; $0.error = "\(error)" }
                throw error
            }
            background("es.snapshot.poll") { [self] in pollSnapshot(id, req.service, req.snapshot) }
        }
        return id
    }

    func runExport(_ id: String, _ req: Automate_Sidecar_Es_ESCreateSnapshotRequest, _ indices: [String]) {
        let exporter = Exporter(engine: engine)
        let store = self.store
        do {
            let out = try exporter.export(
                indices: indices, to: exportStore(service: req.service, snapshot: req.snapshot),
                meta: ["service": req.service, "snapshot": req.snapshot, "engine": config.searchURL]
            ) { index, done, total in
                store.updateIndex(id, index) { $0.phase = .running; $0.docsDone = done; $0.docsTotal = total }
            }
            for e in out {
                store.updateIndex(id, e.name) { $0.phase = .completed; $0.docsDone = e.docs; $0.docsTotal = e.docs; $0.sha256 = e.sha256; $0.size = e.size }
            }
            store.update(id) { $0.phase = .completed; $0.finishedAt = rfc3339(); $0.shortTermDone = true; $0.longTermDone = true }
            logger.info("export \(id) completed: \(indices.count) indices")
        } catch {
            logger.error("export \(id) failed: \(error)")
            store.update(id) { $0.phase = .failed; $0.error = "\(error)"; $0.finishedAt = rfc3339() }
        }
    }

    func pollSnapshot(_ id: String, _ service: String, _ snapshot: String) {
        while true {
            do {
                let p = try snapshots.snapshotStatus(service: service, snapshot: snapshot)
                store.update(id) { s in
                    s.indices = p.indices
                    s.phase = p.phase
                    if p.phase == .failed { s.error = p.error }
                    if p.phase == .completed || p.phase == .failed { s.finishedAt = rfc3339(); s.shortTermDone = true; s.longTermDone = true }
                }
                if p.phase == .completed || p.phase == .failed { return }
            } catch {
                store.update(id) { $0.phase = .failed; $0.error = "\(error)" }
                return
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }

    // MARK: restore

    public func startRestore(_ req: Automate_Sidecar_Es_ESRestoreSnapshotRequest) async throws -> String {
        guard Self.validName(req.service), Self.validName(req.snapshot) else { throw RPCError(.invalidArgument, "bad service or snapshot name") }
        switch config.mode {
        case .snapshot:
            let indices = req.indices
            try await blocking { [self] in try snapshots.restore(service: req.service, snapshot: req.snapshot, indices: indices) }
            let id = newOperation(kind: "restore", snapshot: req.snapshot, indices: indices)
            store.update(id) { $0.phase = .running }
            background("es.restore.poll") { [self] in pollRecovery(id, indices) }
            return id
        case .export:
            let es = exportStore(service: req.service, snapshot: req.snapshot)
            let exporter = Exporter(engine: engine)
            let (indices, chosen) = try await blocking { () -> ([String], [ExportedIndex]) in
                guard let m = try exporter.readManifest(from: es) else {
                    throw SearchError(status: 404, message: "snapshot \(req.snapshot) of \(req.service) has no manifest.json")
                }
                var chosen = m.indices
                if !req.indices.isEmpty {
                    for n in req.indices where !chosen.contains(where: { $0.name == n }) {
                        throw SearchError(status: 404, message: "index \"\(n)\" is not in snapshot \(req.snapshot)")
                    }
                    chosen = chosen.filter { req.indices.contains($0.name) }
                }
                if !req.replaceExisting {
                    for i in chosen where try exporter.engine.indexExists(i.name) {
                        throw SearchError(status: 409, message: "index \"\(i.name)\" already exists (set replace_existing)")
                    }
                }
                return (chosen.map(\.name), chosen)
            }
            let id = newOperation(kind: "restore", snapshot: req.snapshot, indices: indices)
            let replace = req.replaceExisting
            background("es.import") { [self] in runImport(id, chosen, es, replace: replace) }
            return id
        }
    }

    /// Verifies every object first (nothing touched if any is altered or truncated), then creates every
    /// index (short-term done: the indices exist and are usable), then bulk-loads (long-term).
    func runImport(_ id: String, _ indices: [ExportedIndex], _ es: S3ExportStore, replace: Bool) {
        let exporter = Exporter(engine: engine)
        let store = self.store
        store.update(id) { $0.phase = .running }
        do {
            for i in indices {
                store.updateIndex(id, i.name) { $0.phase = .running; $0.docsTotal = i.docs; $0.size = i.size; $0.sha256 = i.sha256 }
                try exporter.verify(i, in: es)
            }
            for i in indices { try exporter.create(i, replace: replace) }
            store.update(id) { $0.shortTermDone = true }
            for i in indices {
                do {
                    try exporter.load(i, from: es) { index, done, _ in store.updateIndex(id, index) { $0.docsDone = done } }
                } catch {
                    store.updateIndex(id, i.name) { $0.phase = .failed; $0.error = "\(error)" }
                    throw error
                }
                store.updateIndex(id, i.name) { $0.phase = .completed; $0.docsDone = i.docs }
            }
            store.update(id) { $0.phase = .completed; $0.longTermDone = true; $0.finishedAt = rfc3339() }
            logger.info("restore \(id) completed")
        } catch {
            logger.error("restore \(id) failed: \(error)")
            store.update(id) { $0.phase = .failed; $0.error = "\(error)"; $0.finishedAt = rfc3339() }
        }
    }

    func pollRecovery(_ id: String, _ indices: [String]) {
        while true {
            do {
                let p = try snapshots.restoreStatus(indices: indices)
                store.update(id) { s in
                    s.indices = p.indices
                    s.phase = p.phase
                    s.shortTermDone = true
                    if p.phase == .completed { s.longTermDone = true; s.finishedAt = rfc3339() }
                }
                if p.phase == .completed { return }
            } catch {
                store.update(id) { $0.phase = .failed; $0.error = "\(error)" }
                return
            }
            Thread.sleep(forTimeInterval: 1)
        }
    }
}
