import AutomateRPC
import BackupContract
import BackupRepository
import Crypto
import Foundation
import DataTools
import Operations
import S3Client
import SidecarProto

/// Restores what one service owns from a backup: reads and checks `<backup-id>/<service>/metadata.json`
/// (its sha256 against `checksums.json`), then restores databases (pg-sidecar: temp database, rename, row
/// counts checked) and paths (tarball into a scratch folder, sha256 checked, swapped in) as the
/// short-term part, and search indices (es-sidecar) as the long-term part. The operation's progress
/// reaches phase `loading` when the short-term part is done.
public struct ServiceRestore: Sendable {
    public let service: String
    public let owned: OwnedData
    public let config: KitConfig

    public init(service: String, owned: OwnedData, config: KitConfig) {
        self.service = service
        self.owned = owned
        self.config = config
    }

    /// The progress item of the long-term part (search indices); every other item is short-term.
    public static let longTermItem = "es"

    /// The service's metadata.json in the backup, checked against checksums.json.
    public func metadata(backupID: String) async throws -> ServiceMetadata {
        let key = "\(backupID)/\(service)/metadata.json"
        let bytes: [UInt8]
        do { bytes = try await config.s3.getObject(bucket: config.bucket, key: key) } catch let e as S3Error where e.isNotFound {
            return try await phaseOneMetadata(backupID: backupID)
        }
        if let sums = try? await config.s3.getObject(bucket: config.bucket, key: "\(backupID)/checksums.json") {
            let checksums = try JSONDecoder().decode(Checksums.self, from: Data(sums))
            guard let want = checksums.files["\(service)/metadata.json"] else {
                throw KitError(.failed, "\(backupID)/checksums.json does not list \(service)/metadata.json")
            }
            let got = Checksum.sha256(bytes)
            guard got == want else {
                throw KitError(.failed, "\(key): sha256 \(got.prefix(12))…, checksums.json says \(want.prefix(12))…")
            }
        }
        do {
            return try JSONDecoder().decode(ServiceMetadata.self, from: Data(bytes))
        } catch {
            throw KitError(.failed, "\(key) does not parse: \(error)")
        }
    }

    /// A phase-one backup (plain files, no metadata.json and no checksums.json): its artifacts are found by
    /// listing `<backup-id>/<service>/` and their sha256 is taken on a first read (nothing recorded to
    /// check it against; `automate backup verify` reports them as unverified).
    func phaseOneMetadata(backupID: String) async throws -> ServiceMetadata {
        let s3 = config.s3, bucket = config.bucket, prefix = "\(backupID)/\(service)/"
        if (try? await s3.getObject(bucket: bucket, key: "\(backupID)/checksums.json")) != nil {
            throw KitError(.failed, "backup \(backupID) has checksums.json but no \(service)/metadata.json: it is incomplete")
        }
        let objects = try await runBlocking("automate.restore") { _ in try s3.listObjectsSync(bucket: bucket, prefix: prefix) }
        guard !objects.isEmpty else {
            throw KitError(.notFound, "backup \(backupID) has nothing for \(service)")
        }
        var artifacts: [ArtifactRecord] = []
        for object in objects {
            let path = String(object.key.dropFirst(prefix.count))
            let format: String
            if path.hasPrefix("pg_data/") && path.hasSuffix(".fc.zst") { format = "pg_dump_custom_zstd" }
            else if path.hasPrefix("pg_data/") && path.hasSuffix(".fc") { format = "pg_dump_custom" }
            else if path.hasPrefix("pg_data/") && path.hasSuffix(".sql") { format = "pg_plain_sql" }
            else if path.hasPrefix("files/") && path.hasSuffix(".tar.zst") { format = "tar_zstd" }
            else if path.hasPrefix("files/") && path.hasSuffix(".tar.gz") { format = "tar_gzip" }
            else { continue }
            let key = object.key
            let digest = try await runBlocking("automate.restore") { _ in
                var hasher = Crypto.SHA256()
                _ = try s3.getObjectSync(bucket: bucket, key: key) { hasher.update(bufferPointer: $0) }
                return Checksum.hex(hasher.finalize())
            }
            artifacts.append(ArtifactRecord(path: path, size: UInt64(object.size), sha256: digest, format: format))
        }
        return ServiceMetadata(service: service, backupID: backupID, versions: ["phase": "one"], artifacts: artifacts)
    }

    /// Runs the restore, reporting to `context` one item per part (`pg` and `files/<name>` short-term,
    /// ``longTermItem`` long-term); its phase becomes `loading` once the short-term part is done. Returns
    /// when both parts are done. Cancelling the calling task cancels the sidecars' work and kills tar.
    /// `keepDatabases`: a point-in-time recovery already brought the databases to the operator's point;
    /// they are left as they are (item `pg` says so) and only the rest comes from the backup.
    public func run(backupID: String, restoreID: String, context: OperationContext, keepDatabases: Bool = false) async throws {
        let metadata = try await metadata(backupID: backupID)
        let prefix = "\(backupID)/\(service)/"
        let calls = SidecarCalls(config: config)
        let service = self.service, config = self.config, owned = self.owned
        let allDumps = metadata.artifacts.filter { ["pg_dump_custom_zstd", "pg_dump_custom", "pg_plain_sql", "pg_dump_custom_chunked"].contains($0.format) }
        let dumps = keepDatabases ? [] : allDumps
        if keepDatabases && !allDumps.isEmpty {
            context.report(item: "pg") { $0.phase = .done; $0.step = "kept: recovered to the point in time" }
        }
        let archives = metadata.artifacts.filter { ["tar_zstd", "tar_gzip", "tar_chunked"].contains($0.format) }
        let exports = metadata.artifacts.filter { $0.format == "ndjson_export" }
        var missing: [String] = []
        for archive in archives where owned.paths.first(where: { $0.name == Self.archiveName(archive.path) }) == nil {
            missing.append(archive.path)
        }
        guard missing.isEmpty else {
            throw KitError(.failed, "\(service) declares no path for \(missing.joined(separator: ", ")) (paths: \(owned.paths.map(\.name)))")
        }
        context.report { $0.phase = .transferring; $0.step = "restoring" }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if !dumps.isEmpty {
                group.addTask {
                    let artifacts = try await Self.pgArtifacts(metadata: metadata, dumps: dumps, prefix: prefix, config: config)
                    context.report(item: "pg") { $0.phase = .transferring; $0.step = "restoring" }
                    _ = try await calls.pgOperation(start: { client in
                        var req = Automate_Sidecar_Pg_PGRestoreRequest()
                        req.backupID = backupID; req.service = service; req.restoreID = restoreID; req.artifacts = artifacts
                        return try await client.call(PGSidecarService.restore, req, timeout: .seconds(120)).operationID
                    }, update: { s in
                        let done = s.bytesDone, total = s.bytesTotal, completed = s.phase == .completed
                        let step = s.databases.first { $0.phase == .running }?.step ?? "restoring"
                        context.report(item: "pg") { p in
                            p.bytesDone = max(0, done); p.bytesTotal = max(0, total)
                            p.step = completed ? "done" : step
                            if completed { p.phase = .done }
                        }
                    })
                }
            }
            for archive in archives {
                group.addTask {
                    let name = Self.archiveName(archive.path)
                    let target = owned.paths.first { $0.name == name }!.path
                    let part = "files/" + name
                    let size = Int64(archive.size)
                    context.report(item: part) { $0.phase = .transferring; $0.step = "extracting"; $0.bytesTotal = size }
                    let archiver = FileArchiver()
                    let entries = try await runBlocking("automate.extract") { job in
                        let reader = config.artifacts.reader()
                        return try archiver.restore(key: prefix + archive.path, to: target, expected: archive, tag: restoreID,
                                             gzip: archive.format == "tar_gzip", reader: reader,
                                             progress: { n in context.report(item: part) { $0.bytesDone = Int64(n) } }, job: job)
                    }
                    context.report(item: part) { p in
                        p.phase = .done; p.step = "done"; p.itemsDone = Int64(entries); p.itemsTotal = Int64(entries)
                    }
                }
            }
            try await group.waitForAll()
        }
        guard !exports.isEmpty else {
            context.report { $0.phase = .loading; $0.step = "done" }
            return
        }
        // Search indices: short-term once every index exists with its mappings, long-term once every
        // document is loaded and counted.
        let long = Self.longTermItem
        context.report(item: long) { $0.phase = .transferring; $0.step = "creating indices" }
        _ = try await calls.esOperation(start: { client in
            var req = Automate_Sidecar_Es_ESRestoreSnapshotRequest()
            req.service = service; req.snapshot = backupID; req.replaceExisting = true
            req.indices = exports.map { (($0.path as NSString).lastPathComponent as NSString).deletingPathExtension }
            return try await client.call(ESSidecarService.restoreSnapshot, req, timeout: .seconds(120)).operationID
        }, update: { s in
            let done = s.indices.reduce(0) { $0 + max(0, $1.docsDone) }
            let total = s.indices.reduce(0) { $0 + max(0, $1.docsTotal) }
            let shortDone = s.shortTermDone, longDone = s.longTermDone
            context.report { p in
                p.update(item: long) { i in
                    i.itemsDone = done; i.itemsTotal = total
                    if shortDone { i.phase = .loading; i.step = "loading" }
                    if longDone { i.phase = .done; i.step = "done" }
                }
                if shortDone { p.phase = .loading; p.step = "loading" }
            }
        })
        context.report { $0.phase = .loading }
        context.report(item: long) { $0.phase = .done; $0.step = "done" }
    }

    /// `files/profiles.tar.zst` → `profiles`.
    static func archiveName(_ path: String) -> String {
        var name = (path as NSString).lastPathComponent
        for suffix in [".tar.zst", ".tar.gz", ".tar"] where name.hasSuffix(suffix) {
            name.removeLast(suffix.count)
            break
        }
        return name
    }

    /// The pg-sidecar's artifacts, with expected row counts from its own `pg_data/metadata.json` (whose
    /// sha256 is checked against the service's metadata first).
    static func pgArtifacts(metadata: ServiceMetadata, dumps: [ArtifactRecord], prefix: String, config: KitConfig) async throws
        -> [Automate_Sidecar_Pg_PGArtifact]
    {
        var sidecarMeta: PGBackupMetadata? = nil
        if let record = metadata.artifacts.first(where: { $0.format == "pg_sidecar_metadata" }) {
            let bytes = try await config.s3.getObject(bucket: config.bucket, key: prefix + record.path)
            guard Checksum.sha256(bytes) == record.sha256 else {
                throw KitError(.failed, "\(prefix)\(record.path): sha256 does not match metadata.json")
            }
            sidecarMeta = try JSONDecoder().decode(PGBackupMetadata.self, from: Data(bytes))
        }
        return dumps.map { dump in
            var a = Automate_Sidecar_Pg_PGArtifact()
            let file = (dump.path as NSString).lastPathComponent
            a.database = file.components(separatedBy: ".").first ?? file
            a.key = prefix + dump.path
            switch dump.format {
            case "pg_plain_sql": a.format = "sql"
            case "pg_dump_custom": a.format = "custom"
            case "pg_dump_custom_chunked": a.format = "custom+chunks"
            default: a.format = "custom+zstd"
            }
            a.sha256 = dump.sha256
            a.size = Int64(dump.size)
            if let db = sidecarMeta?.databases.first(where: { $0.name == a.database }) {
                a.tables = db.tables.map { t in
                    var c = Automate_Sidecar_Pg_PGTableCount(); c.schema = t.schema; c.table = t.table; c.rows = t.rows; return c
                }
                a.encoding = db.encoding ?? ""; a.lcCollate = db.lcCollate ?? ""; a.lcCtype = db.lcCtype ?? ""
            }
            return a
        }
    }
}
