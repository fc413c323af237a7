import AutomateRPC
import Crypto
import Foundation
import Logging
import S3Client
import SidecarProto
#if canImport(Glibc)
import Glibc
#endif

public typealias PGStatus = Automate_Sidecar_Pg_PGStatus
public typealias PGDatabaseStatus = Automate_Sidecar_Pg_PGDatabaseStatus
public typealias PGPhase = Automate_Sidecar_Pg_PGPhase

public struct PGSidecarConfig: Sendable {
    public var socketPath: String
    public var s3: S3Client
    public var bucket: String
    public var server: PGServer
    /// `<root>/<major>/bin/pg_dump` is used: the server's own major version.
    public var pgBinRoot: String = "/usr/lib/postgresql"
    public var zstdLevel: Int32 = 1
    public var partSize: Int = 8 << 20

    public init(socketPath: String, s3: S3Client, bucket: String, server: PGServer) {
        self.socketPath = socketPath
        self.s3 = s3
        self.bucket = bucket
        self.server = server
    }

    /// From the service environment: `AUTOMATE_SERVICE_SOCKET` and the manifest's `[config]` values
    /// (`AUTOMATE_CFG_S3_ENDPOINT`, `_S3_REGION`, `_S3_BUCKET`, `_S3_CREDENTIALS` (file), `_PG_HOST`
    /// (socket dir), `_PG_PORT`, `_PG_USER`, `_PG_BIN_ROOT`, `_ZSTD_LEVEL`, `_PART_SIZE_MIB`).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> PGSidecarConfig {
        func cfg(_ k: String) -> String? { env["AUTOMATE_CFG_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let socket = env["AUTOMATE_SERVICE_SOCKET"] else { throw PGError(message: "AUTOMATE_SERVICE_SOCKET is not set") }
        // The supervisor hands gateway users AUTOMATE_GATEWAY_* ([backup] gateway = true); config overrides.
        func gw(_ k: String) -> String? { env["AUTOMATE_GATEWAY_" + k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let endpoint = cfg("S3_ENDPOINT") ?? gw("ENDPOINT") else {
            throw PGError(message: "no S3 endpoint: set config s3_endpoint or run with [backup] gateway = true")
        }
        var creds: S3Credentials? = nil
        if let path = cfg("S3_CREDENTIALS") {
            creds = try S3Credentials.load(path: path)
        } else if let id = gw("ACCESS_KEY_ID"), let secret = gw("SECRET_ACCESS_KEY") {
            creds = S3Credentials(accessKeyID: id, secretAccessKey: secret)
        }
        let host = cfg("PG_HOST") ?? env["AUTOMATE_RUN_DIR"] ?? "/tmp"
        var c = PGSidecarConfig(
            socketPath: socket, s3: S3Client(endpoint: endpoint, region: cfg("S3_REGION") ?? gw("REGION") ?? "us-east-1", credentials: creds),
            bucket: cfg("S3_BUCKET") ?? gw("BUCKET") ?? "backups",
            server: PGServer(host: host, port: Int(cfg("PG_PORT") ?? "") ?? 5432, user: cfg("PG_USER") ?? "automate"))
        if let r = cfg("PG_BIN_ROOT") { c.pgBinRoot = r }
        if let l = cfg("ZSTD_LEVEL").flatMap(Int32.init) { c.zstdLevel = min(max(l, 1), 19) }
        if let p = cfg("PART_SIZE_MIB").flatMap(Int.init) { c.partSize = max(5, p) << 20 }
        return c
    }
}

/// What the sidecar writes to `<backup_id>/<service>/pg_data/metadata.json`.
public struct PGBackupMetadata: Codable, Sendable {
    public struct Table: Codable, Sendable, Equatable {
        public var schema: String
        public var table: String
        public var rows: Int64
    }
    public struct Database: Codable, Sendable {
        public var name: String
        public var key: String
        public var format: String
        public var size: Int64
        public var sha256: String
        public var uncompressedSize: Int64
        public var tables: [Table]
        public var startedAt: String
        public var finishedAt: String
        public var encoding: String?
        public var lcCollate: String?
        public var lcCtype: String?
        enum CodingKeys: String, CodingKey {
            case name, key, format, size, sha256, tables, encoding
            case uncompressedSize = "uncompressed_size", startedAt = "started_at", finishedAt = "finished_at"
            case lcCollate = "lc_collate", lcCtype = "lc_ctype"
        }
    }
    public var formatVersion = 1
    public var backupID: String
    public var service: String
    public var serverVersion: String
    public var dumpTool: String
    public var startedAt: String
    public var finishedAt: String
    public var databases: [Database]

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", backupID = "backup_id", service, serverVersion = "server_version"
        case dumpTool = "dump_tool", startedAt = "started_at", finishedAt = "finished_at", databases
    }
}

func rfc3339(_ date: Date = Date()) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: date)
}

func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

/// Live status of every operation since the sidecar started.
final class OperationStore: @unchecked Sendable {
    private let lock = NSLock()
    private var statuses: [String: PGStatus] = [:]

    func insert(_ s: PGStatus) { lock.withLock { statuses[s.operationID] = s } }
    func get(_ id: String) -> PGStatus? { lock.withLock { statuses[id] } }
    func update(_ id: String, _ body: (inout PGStatus) -> Void) {
        lock.withLock {
            guard var s = statuses[id] else { return }
            body(&s)
            s.bytesDone = s.databases.reduce(0) { $0 + $1.bytesDone }
            s.bytesTotal = s.databases.reduce(0) { $0 + $1.bytesTotal }
            statuses[id] = s
        }
    }
    func updateDatabase(_ id: String, _ index: Int, _ body: (inout PGDatabaseStatus) -> Void) {
        update(id) { s in body(&s.databases[index]) }
    }
}

public final class PGSidecar: Sendable {
    public let config: PGSidecarConfig
    let logger: Logger
    let store = OperationStore()

    public init(config: PGSidecarConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        signal(SIGPIPE, SIG_IGN)  // a pg_restore that ends early must be an EPIPE, not our death
    }

    static func validID(_ s: String) -> Bool { s.count == 14 && s.allSatisfy(\.isNumber) }
    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 100 && s.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    public func dataPrefix(backupID: String, service: String) -> String { "\(backupID)/\(service)/pg_data/" }

    // MARK: RPC

    public func register(on server: RPCServer) {
        typealias P = Automate_Sidecar_Pg_PGCreateRepoRequest
        server.registerUnary("CreateRepo") { [self] (req: Automate_Sidecar_Pg_PGCreateRepoRequest, _) -> Automate_Sidecar_Pg_PGCreateRepoResponse in
            var r = Automate_Sidecar_Pg_PGCreateRepoResponse()
            r.created = try await wrapS3 { try await config.s3.createBucket(req.bucket.isEmpty ? config.bucket : req.bucket) }
            return r
        }
        server.registerUnary("DeleteRepo") { [self] (req: Automate_Sidecar_Pg_PGDeleteRepoRequest, _) -> Automate_Sidecar_Pg_PGDeleteRepoResponse in
            guard !req.prefix.isEmpty else { throw RPCError(.invalidArgument, "DeleteRepo needs a prefix") }
            let s3 = config.s3, bucket = req.bucket.isEmpty ? config.bucket : req.bucket
            var r = Automate_Sidecar_Pg_PGDeleteRepoResponse()
            r.objectsDeleted = Int64(try await wrapS3 { try await runOnOwnThread { try s3.deletePrefixSync(bucket: bucket, prefix: req.prefix) } })
            return r
        }
        server.registerUnary("ListDatabases") { [self] (_: Automate_Sidecar_Pg_PGListDatabasesRequest, _) -> Automate_Sidecar_Pg_PGListDatabasesResponse in
            let server = config.server
            return try await runOnOwnThread {
                let c = try Self.connect(server)
                var r = Automate_Sidecar_Pg_PGListDatabasesResponse()
                r.databases = try c.listDatabases()
                r.serverVersion = c.serverVersion
                return r
            }
        }
        server.registerUnary("CreateBackup") { [self] (req: Automate_Sidecar_Pg_PGCreateBackupRequest, _) -> Automate_Sidecar_Pg_PGOperation in
            var r = Automate_Sidecar_Pg_PGOperation()
            r.operationID = try await startBackup(req)
            return r
        }
        server.registerUnary("DeleteBackup") { [self] (req: Automate_Sidecar_Pg_PGDeleteBackupRequest, _) -> Automate_Sidecar_Pg_PGDeleteBackupResponse in
            guard Self.validID(req.backupID), Self.validName(req.service) else {
                throw RPCError(.invalidArgument, "backup_id must be yyyyMMddHHmmss and service [a-z0-9-_]")
            }
            let s3 = config.s3, bucket = config.bucket, prefix = dataPrefix(backupID: req.backupID, service: req.service)
            var r = Automate_Sidecar_Pg_PGDeleteBackupResponse()
            r.objectsDeleted = Int64(try await wrapS3 { try await runOnOwnThread { try s3.deletePrefixSync(bucket: bucket, prefix: prefix) } })
            return r
        }
        server.registerUnary("Restore") { [self] (req: Automate_Sidecar_Pg_PGRestoreRequest, _) -> Automate_Sidecar_Pg_PGOperation in
            var r = Automate_Sidecar_Pg_PGOperation()
            r.operationID = try await startRestore(req)
            return r
        }
        server.registerUnary("Status") { [self] (req: Automate_Sidecar_Pg_PGStatusRequest, _) -> PGStatus in
            guard let s = store.get(req.operationID) else { throw RPCError(.notFound, "no operation \"\(req.operationID)\"") }
            return s
        }
        server.registerServerStream("WatchStatus") { [self] (req: Automate_Sidecar_Pg_PGStatusRequest, writer: RPCResponseWriter<PGStatus>, _) in
            guard var last = store.get(req.operationID) else { throw RPCError(.notFound, "no operation \"\(req.operationID)\"") }
            try await writer.send(last)
            while last.phase == .pending || last.phase == .running {
                try await Task.sleep(for: .milliseconds(250))
                guard let s = store.get(req.operationID) else { return }
                if s != last { try await writer.send(s); last = s }
            }
        }
    }

    func wrapS3<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as S3Error {
            throw RPCError(e.isNotFound ? .notFound : .unavailable, e.description)
        } catch let e as HTTPTransportError {
            throw RPCError(.unavailable, e.description)
        }
    }

    static func connect(_ server: PGServer, database: String = "postgres") throws -> PGConnection {
        do { return try PGConnection(server, database: database) } catch let e as PGError {
            throw RPCError(.failedPrecondition, e.message)
        }
    }

    public func status(_ id: String) -> PGStatus? { store.get(id) }

    /// Aborts multipart uploads of dumps that a killed sidecar left open (call at start, before serving:
    /// no upload of this process is running then). Returns how many.
    @discardableResult
    public func abortStaleUploads() throws -> Int {
        let open = try config.s3.listMultipartUploadsSync(bucket: config.bucket).filter { $0.key.contains("/pg_data/") && $0.key.hasSuffix(".fc.zst") }
        for u in open { try? config.s3.abortMultipartUploadSync(bucket: config.bucket, key: u.key, uploadID: u.uploadID) }
        return open.count
    }

    func newOperation(kind: String, backupID: String, service: String, databases: [String]) -> String {
        var bytes = [UInt8](repeating: 0, count: 6)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        let id = "\(kind)-\(backupID)-" + bytes.map { String(format: "%02x", $0) }.joined()
        var s = PGStatus()
        s.operationID = id
        s.kind = kind
        s.phase = .pending
        s.backupID = backupID
        s.service = service
        s.startedAt = rfc3339()
        s.databases = databases.map { d in var x = PGDatabaseStatus(); x.database = d; x.phase = .pending; return x }
        store.insert(s)
        return id
    }

    func toolPath(_ tool: String, major: Int) -> String { "\(config.pgBinRoot)/\(major)/bin/\(tool)" }

    func toolArgs(database: String) -> [String] {
        ["-h", config.server.host, "-p", String(config.server.port), "-U", config.server.user, "--no-password", "-d", database]
    }

    // MARK: backup

    /// Validates (every database must exist: NOT_FOUND names the first that does not), then runs the
    /// backup on a thread of its own; returns the operation id at once.
    public func startBackup(_ req: Automate_Sidecar_Pg_PGCreateBackupRequest) async throws -> String {
        guard Self.validID(req.backupID) else { throw RPCError(.invalidArgument, "backup_id \"\(req.backupID)\" is not yyyyMMddHHmmss") }
        guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
        guard !req.databases.isEmpty else { throw RPCError(.invalidArgument, "no databases to back up") }
        let server = config.server
        try await runOnOwnThread {
            let c = try Self.connect(server)
            for d in req.databases where try !c.databaseExists(d) {
                throw RPCError(.notFound, "database \"\(d)\" does not exist")
            }
        }
        let id = newOperation(kind: "backup", backupID: req.backupID, service: req.service, databases: req.databases)
        let t = Thread { [self] in runBackup(id, req) }
        t.name = "pg.backup"
        t.start()
        return id
    }

    func runBackup(_ id: String, _ req: Automate_Sidecar_Pg_PGCreateBackupRequest) {
        store.update(id) { $0.phase = .running }
        let started = rfc3339()
        do {
            let admin = try PGConnection(config.server)
            let version = admin.serverVersion
            let major = admin.majorVersion
            store.update(id) { $0.serverVersion = version }
            for (i, d) in req.databases.enumerated() {
                let total = (try? admin.databaseSize(d)) ?? 0
                store.updateDatabase(id, i) { $0.bytesTotal = total }
            }
            var artifacts: [PGBackupMetadata.Database] = []
            for (i, d) in req.databases.enumerated() {
                do {
                    artifacts.append(try dumpDatabase(id, i, database: d, backupID: req.backupID, service: req.service, major: major))
                } catch {
                    store.updateDatabase(id, i) { $0.phase = .failed; $0.error = "\(error)"; $0.toolPid = 0 }
                    throw error
                }
            }
            let meta = PGBackupMetadata(
                backupID: req.backupID, service: req.service, serverVersion: version,
                dumpTool: toolPath("pg_dump", major: major) + " -Fc -Z0 | zstd -\(config.zstdLevel)",
                startedAt: started, finishedAt: rfc3339(), databases: artifacts)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try config.s3.putObjectSync(
                bucket: config.bucket, key: dataPrefix(backupID: req.backupID, service: req.service) + "metadata.json",
                bytes: Array(try enc.encode(meta)), contentType: "application/json")
            store.update(id) { $0.phase = .completed; $0.finishedAt = rfc3339() }
            logger.info("backup \(id) completed: \(req.databases.joined(separator: ", "))")
        } catch {
            logger.error("backup \(id) failed: \(error)")
            store.update(id) { $0.phase = .failed; $0.error = "\(error)"; $0.finishedAt = rfc3339() }
        }
    }

    /// pg_dump -Fc -Z0 → zstd → sha256/size → multipart upload, all streamed on this thread (parts upload
    /// on their own threads, at most two at a time). Row counts come from the same snapshot pg_dump uses.
    func dumpDatabase(_ id: String, _ index: Int, database: String, backupID: String, service: String, major: Int) throws -> PGBackupMetadata.Database {
        let started = rfc3339()
        let key = dataPrefix(backupID: backupID, service: service) + "\(database).fc.zst"
        store.updateDatabase(id, index) { $0.phase = .running; $0.step = "counting"; $0.key = key }
        // A repeatable-read transaction held open while pg_dump runs: its snapshot is exported to pg_dump,
        // so the row counts recorded match the dump exactly.
        let snapConn = try PGConnection(config.server, database: database)
        try snapConn.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        let snapshot = try snapConn.query("SELECT pg_export_snapshot()").first?[0] ?? ""
        defer { _ = try? snapConn.query("COMMIT") }
        // Row counts run on their own thread, in the exported snapshot, while pg_dump dumps it.
        final class CountBox: @unchecked Sendable {
            var result: Result<[PGBackupMetadata.Table], Error> = .success([])
            let done = DispatchSemaphore(value: 0)
        }
        let box = CountBox()
        nonisolated(unsafe) let countConn = snapConn
        let counter = Thread {
            box.result = Result { try countConn.tableRowCounts().map { PGBackupMetadata.Table(schema: $0.schema, table: $0.table, rows: $0.rows) } }
            box.done.signal()
        }
        var counterStarted = false
        var counterJoined = false
        func joinCounter() throws -> [PGBackupMetadata.Table] {
            if counterStarted && !counterJoined { box.done.wait(); counterJoined = true }
            return try box.result.get()
        }
        // Never leave the connection to a running thread; a counter that never started (the upload could
        // not begin) has nothing to wait for.
        defer { _ = try? joinCounter() }

        let tool = ToolProcess(
            path: toolPath("pg_dump", major: major),
            arguments: ["-Fc", "-Z0", "--snapshot=\(snapshot)"] + toolArgs(database: database),
            pipeStdout: true, pipeStdin: false)
        let writer = try MultipartWriter(client: config.s3, bucket: config.bucket, key: key, partSize: config.partSize)
        var hasher = SHA256()
        var compressedSize: Int64 = 0
        var raw: Int64 = 0
        do {
            try tool.start()
            counter.start()
            counterStarted = true
            let pid = tool.pid
            store.updateDatabase(id, index) { $0.step = "dumping"; $0.toolPid = pid }
            let zstd = try ZstdCompressor(level: config.zstdLevel) { chunk in
                hasher.update(bufferPointer: chunk)
                compressedSize += Int64(chunk.count)
                try writer.write(chunk)
            }
            var lastReport: Int64 = 0
            do {
                try tool.readStdout { chunk in
                    raw += Int64(chunk.count)
                    try zstd.compress(chunk)
                    if raw - lastReport >= 1 << 20 {
                        lastReport = raw
                        let r = raw, c = compressedSize
                        store.updateDatabase(id, index) { $0.bytesDone = r; $0.size = c }
                    }
                }
            } catch {
                tool.kill(SIGKILL)
                try? tool.wait()
                throw error
            }
            try tool.wait()  // a pg_dump that failed or was killed: its stderr, and no complete
            try zstd.finish()
            _ = try joinCounter()
            store.updateDatabase(id, index) { $0.step = "uploading"; $0.toolPid = 0 }
            _ = try writer.finish()
        } catch {
            writer.abort()
            throw error
        }
        let digest = hex(hasher.finalize())
        let size = compressedSize, r = raw
        let counts = try joinCounter()
        store.updateDatabase(id, index) { s in
            s.phase = .completed; s.step = "done"; s.bytesDone = r; s.sha256 = digest; s.size = size
            s.tables = counts.map { t in var x = Automate_Sidecar_Pg_PGTableCount(); x.schema = t.schema; x.table = t.table; x.rows = t.rows; return x }
        }
        let locale = try? snapConn.query("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = $1", [database]).first
        return PGBackupMetadata.Database(
            name: database, key: key, format: "custom+zstd", size: size, sha256: digest, uncompressedSize: r,
            tables: counts, startedAt: started, finishedAt: rfc3339(),
            encoding: locale?[0] ?? nil, lcCollate: locale?[1] ?? nil, lcCtype: locale?[2] ?? nil)
    }

    // MARK: restore

    public func startRestore(_ req: Automate_Sidecar_Pg_PGRestoreRequest) async throws -> String {
        guard Self.validID(req.backupID) else { throw RPCError(.invalidArgument, "backup_id \"\(req.backupID)\" is not yyyyMMddHHmmss") }
        guard Self.validName(req.service) else { throw RPCError(.invalidArgument, "service \"\(req.service)\" is not a service name") }
        var artifacts = req.artifacts
        if artifacts.isEmpty {
            let key = dataPrefix(backupID: req.backupID, service: req.service) + "metadata.json"
            let s3 = config.s3, bucket = config.bucket
            let body: [UInt8]
            do { body = try await runOnOwnThread { try s3.getObjectSync(bucket: bucket, key: key) } } catch let e as S3Error where e.isNotFound {
                throw RPCError(.notFound, "backup \(req.backupID) of \(req.service) has no \(key)")
            }
            let dec = JSONDecoder()
            let meta: PGBackupMetadata
            do { meta = try dec.decode(PGBackupMetadata.self, from: Data(body)) } catch {
                throw RPCError(.dataLoss, "\(key) does not decode: \(error)")
            }
            artifacts = meta.databases.map { d in
                var a = Automate_Sidecar_Pg_PGArtifact()
                a.database = d.name; a.key = d.key; a.format = d.format; a.sha256 = d.sha256; a.size = d.size
                a.encoding = d.encoding ?? ""; a.lcCollate = d.lcCollate ?? ""; a.lcCtype = d.lcCtype ?? ""
                a.tables = d.tables.map { t in var x = Automate_Sidecar_Pg_PGTableCount(); x.schema = t.schema; x.table = t.table; x.rows = t.rows; return x }
                return a
            }
        }
        if !req.databases.isEmpty {
            for d in req.databases where !artifacts.contains(where: { $0.database == d }) {
                throw RPCError(.notFound, "database \"\(d)\" is not in backup \(req.backupID) of \(req.service)")
            }
            artifacts = artifacts.filter { req.databases.contains($0.database) }
        }
        for a in artifacts {
            guard ["custom+zstd", "custom", "sql"].contains(a.format) else { throw RPCError(.invalidArgument, "artifact \(a.key): unknown format \"\(a.format)\"") }
            guard a.sha256.count == 64 else { throw RPCError(.invalidArgument, "artifact \(a.key) has no sha256; refusing to restore what cannot be checked") }
        }
        let chosen = artifacts
        let id = newOperation(kind: "restore", backupID: req.backupID, service: req.service, databases: chosen.map(\.database))
        let t = Thread { [self] in runRestore(id, chosen) }
        t.name = "pg.restore"
        t.start()
        return id
    }

    func runRestore(_ id: String, _ artifacts: [Automate_Sidecar_Pg_PGArtifact]) {
        store.update(id) { s in
            s.phase = .running
            for i in s.databases.indices { s.databases[i].bytesTotal = artifacts[i].size }
        }
        do {
            let admin = try PGConnection(config.server)
            store.update(id) { $0.serverVersion = admin.serverVersion }
            for (i, a) in artifacts.enumerated() {
                do {
                    try restoreDatabase(id, i, a, admin: admin)
                } catch {
                    store.updateDatabase(id, i) { $0.phase = .failed; $0.error = "\(error)"; $0.toolPid = 0 }
                    throw error
                }
            }
            store.update(id) { $0.phase = .completed; $0.finishedAt = rfc3339() }
            logger.info("restore \(id) completed")
        } catch {
            logger.error("restore \(id) failed: \(error)")
            store.update(id) { $0.phase = .failed; $0.error = "\(error)"; $0.finishedAt = rfc3339() }
        }
    }

    /// Restores into a fresh temporary database, verifies the object's sha256 (streamed) and the row
    /// counts, and only then replaces the existing database (DROP … WITH (FORCE), then RENAME). Any failure
    /// drops the temporary database and leaves the existing one untouched.
    func restoreDatabase(_ id: String, _ index: Int, _ a: Automate_Sidecar_Pg_PGArtifact, admin: PGConnection) throws {
        let suffix = "__restore_" + String(id.suffix(12))
        var base = a.database
        while base.utf8.count + suffix.utf8.count > 63 { base.removeLast() }
        let temp: String = base + suffix
        store.updateDatabase(id, index) { $0.phase = .running; $0.step = "restoring"; $0.key = a.key }
        try admin.query("DROP DATABASE IF EXISTS \(quoteIdent(temp))")
        // The original database's encoding and locale when the backup recorded them, else the server's.
        func literal(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
        var create = "CREATE DATABASE \(quoteIdent(temp)) TEMPLATE template0"
        if !a.encoding.isEmpty { create += " ENCODING \(literal(a.encoding))" }
        if !a.lcCollate.isEmpty { create += " LC_COLLATE \(literal(a.lcCollate))" }
        if !a.lcCtype.isEmpty { create += " LC_CTYPE \(literal(a.lcCtype))" }
        try admin.query(create)
        var committed = false
        defer {
            if !committed { _ = try? admin.query("DROP DATABASE IF EXISTS \(quoteIdent(temp)) WITH (FORCE)") }
        }
        let major = admin.majorVersion
        let tool: ToolProcess
        if a.format == "sql" {
            tool = ToolProcess(path: toolPath("psql", major: major),
                               arguments: ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"] + toolArgs(database: temp) + ["-f", "-"],
                               pipeStdout: false, pipeStdin: true)
        } else {
            tool = ToolProcess(path: toolPath("pg_restore", major: major),
                               arguments: ["--exit-on-error", "--no-owner"] + toolArgs(database: temp),
                               pipeStdout: false, pipeStdin: true)
        }
        try tool.start()
        let pid = tool.pid
        store.updateDatabase(id, index) { $0.toolPid = pid }
        var hasher = SHA256()
        var fetched: Int64 = 0
        var fed: Int64 = 0
        var lastReport: Int64 = 0
        do {
            let feed: (UnsafeRawBufferPointer) throws -> Void = { chunk in
                fed += Int64(chunk.count)
                try tool.writeStdin(chunk)
            }
            let zstd = a.format == "custom+zstd" ? try ZstdDecompressor(output: feed) : nil
            try config.s3.getObjectSync(bucket: config.bucket, key: a.key) { chunk in
                hasher.update(bufferPointer: chunk)
                fetched += Int64(chunk.count)
                if let zstd { try zstd.decompress(chunk) } else { try feed(chunk) }
                if fetched - lastReport >= 1 << 20 {
                    lastReport = fetched
                    let f = fetched
                    self.store.updateDatabase(id, index) { $0.bytesDone = f }
                }
            }
            try zstd?.finish()
            let digest = hex(hasher.finalize())
            if digest != a.sha256.lowercased() {
                throw PGError(message: "\(a.key): sha256 \(digest) does not match the backup's \(a.sha256) (\(fetched) bytes read, \(a.size) expected); refusing to restore")
            }
        } catch {
            tool.kill(SIGKILL)
            tool.closeStdin()
            try? tool.wait()
            if let e = error as? S3Error, e.isNotFound { throw PGError(message: "\(a.key) is missing: \(e)") }
            throw error
        }
        tool.closeStdin()
        try tool.wait()
        let f = fetched
        store.updateDatabase(id, index) { $0.bytesDone = f; $0.toolPid = 0; $0.step = "counting" }
        if !a.tables.isEmpty {
            let conn = try PGConnection(config.server, database: temp)
            var got: [String: Int64] = [:]
            for t in try conn.tableRowCounts() { got["\(t.schema).\(t.table)"] = t.rows }
            for t in a.tables {
                let name = "\(t.schema).\(t.table)"
                if got[name] != t.rows {
                    throw PGError(message: "row count of \(name) is \(got[name].map(String.init) ?? "missing") after restore, the backup has \(t.rows)")
                }
            }
        }
        store.updateDatabase(id, index) { $0.step = "renaming" }
        if try admin.databaseExists(a.database) {
            try admin.query("DROP DATABASE \(quoteIdent(a.database)) WITH (FORCE)")
        }
        try admin.query("ALTER DATABASE \(quoteIdent(temp)) RENAME TO \(quoteIdent(a.database))")
        committed = true
        let sha = a.sha256
        store.updateDatabase(id, index) { $0.phase = .completed; $0.step = "done"; $0.sha256 = sha; $0.size = f; $0.tables = a.tables }
    }
}
