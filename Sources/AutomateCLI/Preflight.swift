import AutomateManifest
import AutomateSupervisor
import BackupRepository
import Foundation

/// Everything `automate restore` checks before it touches anything. Each failure names the file and
/// what was wrong.
struct Preflight {
    let home: AutomateHome
    let repository: BackupRepository
    let id: String?
    let force: Bool
    let skipVerify: Bool
    let sha256: String?
    let quiet: Bool
    /// A chunked repository's chunk store, opened with the passphrase (nil: plain).
    var chunks: ChunkCheck? = nil

    /// Runs every check; returns the backup to restore.
    func run() throws -> BackupID {
        let say: (String) -> Void = { line in if !quiet { print(line); StandardOutput.flush() } }
        let entries: [BackupRepository.Entry]
        do { entries = try repository.list() } catch { throw CLIError("\(error)", exitCode: 2) }
        let chosen: BackupID
        if let id {
            guard let parsed = BackupID(id) else { throw CLIError("\"\(id)\" is not a backup id (yyyyMMddHHmmss)", exitCode: 2) }
            chosen = parsed
        } else {
            guard let newest = entries.last(where: { $0.state.isRestorable }) else {
                throw CLIError("no restorable backup in \(repository.path) (see `automate restore list \(repository.path)`)", exitCode: 2)
            }
            chosen = newest.id
        }
        guard let entry = entries.first(where: { $0.id == chosen }) else {
            throw CLIError("no backup \(chosen) in \(repository.path)", exitCode: 4)
        }
        say("Checking backup \(chosen) in \(repository.path)...")
        guard entry.state.isRestorable else {
            throw CLIError("\(chosen)/.status is \(entry.state.rawValue): the backup is not complete and cannot be restored; nothing was changed", exitCode: 2)
        }
        if let sha256 {
            guard let fingerprint = entry.fingerprint else {
                throw CLIError("\(chosen) has no checksums.json, so it has no fingerprint to check --sha256 against", exitCode: 2)
            }
            guard fingerprint == sha256.lowercased() else {
                throw CLIError("\(chosen)/checksums.json has sha256 \(fingerprint), not \(sha256): this is not the backup you named; nothing was changed", exitCode: 2)
            }
        }
        let started = ContinuousClock.now
        let report = try BackupVerifier(repository: repository, chunks: chunks).verify(entry, checkArtifacts: !skipVerify)
        let bad = report.findings.filter { $0.verdict == .corrupted || $0.verdict == .missing }
        guard bad.isEmpty && report.problems.isEmpty else {
            let lines = bad.map { "  \($0.verdict.rawValue): \(chosen)/\($0.file): \($0.detail)" } + report.problems.map { "  \($0)" }
            throw CLIError("backup \(chosen) failed its checks; nothing was changed:\n" + lines.joined(separator: "\n"), exitCode: 2)
        }
        let checked = report.findings.filter { $0.verdict == .ok }.count
        say("  \(checked) files checked (\(skipVerify ? "sizes" : chunks == nil ? "sizes and sha256" : "sizes, sha256, and every chunk's pack")) in \(String(format: "%.1f", (ContinuousClock.now - started).seconds))s")

        // The services present at backup time must have manifests here.
        if let data = try? repository.store.read(chosen.rawValue + "/deployment-service/metadata.json"),
           let metadata = try? JSONDecoder().decode(ServiceMetadata.self, from: data), let present = metadata.deployment {
            let location = try StackLocation.discover()
            let missing = present.map(\.name).filter { !FileManager.default.fileExists(atPath: location.servicesDirectory + "/\($0).toml") }
            guard missing.isEmpty else {
                throw CLIError("backup \(chosen) has services with no manifest in \(location.servicesDirectory): \(missing.joined(separator: ", ")); install them first; nothing was changed", exitCode: 2)
            }
        }

        // The home: empty, or --force.
        let data = (try? FileManager.default.contentsOfDirectory(atPath: home.dataDirectory)) ?? []
        if !data.isEmpty && !force {
            throw CLIError("\(home.dataDirectory) holds data (\(data.sorted().joined(separator: ", "))): restore into an empty home, or pass --force to stop its stack and restore over it; nothing was changed", exitCode: 2)
        }
        // The pg-sidecar's records of the backup's databases, read once for the two checks below.
        let dumps = Self.dumpedDatabases(repository: repository, id: chosen, entry: entry)
        // An external PostgreSQL: the backup's databases there must be absent or empty, or --force.
        if let external = try CLIError.reporting(exitCode: 2, { try ManifestLoader.externalSettings(home: home)?.postgresql }) {
            let occupied = try ExternalDatabaseCheck(settings: external).occupied(Array(Set(dumps.compactMap(\.name))).sorted())
            if !occupied.isEmpty && !force {
                throw CLIError("the external PostgreSQL at \(external.host):\(external.port) already holds data in \(occupied.joined(separator: ", ")): pass --force to replace these databases with the backup's; nothing was changed", exitCode: 2)
            }
            if !occupied.isEmpty { say("  --force: replacing \(occupied.joined(separator: ", ")) on \(external.host):\(external.port)") }
        }
        if SupervisorLock.holder(path: home.lockFilePath) != nil && !force {
            throw CLIError("a stack is running for \(home.path): pass --force to stop it and restore over it; nothing was changed", exitCode: 2)
        }

        // Room on disk: the restored databases (uncompressed) and files take several times the backup.
        let needed = Self.estimatedBytes(repository: repository, id: chosen, entry: entry, dumps: dumps)
        var existing = home.path
        while !FileManager.default.fileExists(atPath: existing) && existing != "/" { existing = (existing as NSString).deletingLastPathComponent }
        var fs = statvfs()
        if statvfs(existing, &fs) == 0 {
            let free = UInt64(fs.f_bavail) * UInt64(fs.f_frsize)
            guard free >= needed else {
                throw CLIError("\(home.path) has \(BackupTable.bytes(free)) free, the restore needs about \(BackupTable.bytes(needed)); nothing was changed", exitCode: 2)
            }
        }
        return chosen
    }

    /// One database dump of a backup as the pg-sidecar's `pg_data/metadata.json` records it (read
    /// leniently: a phase-one record may lack fields).
    struct DumpedDatabase {
        var name: String?
        var key: String?
        var uncompressedSize: UInt64
    }

    /// Every service's dumped databases in backup `id`.
    static func dumpedDatabases(repository: BackupRepository, id: BackupID, entry: BackupRepository.Entry) -> [DumpedDatabase] {
        entry.services.flatMap { service -> [DumpedDatabase] in
            guard let data = try? repository.store.read("\(id)/\(service)/pg_data/metadata.json"),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let databases = json["databases"] as? [[String: Any]] else { return [] }
            return databases.map {
                DumpedDatabase(name: $0["name"] as? String, key: $0["key"] as? String,
                               uncompressedSize: ($0["uncompressed_size"] as? NSNumber)?.uint64Value ?? 0)
            }
        }
    }

    /// Uncompressed database sizes (`dumps`), plus 4× every other artifact.
    static func estimatedBytes(repository: BackupRepository, id: BackupID, entry: BackupRepository.Entry, dumps: [DumpedDatabase]) -> UInt64 {
        var total = dumps.reduce(UInt64(0)) { $0 + $1.uncompressedSize }
        let counted = Set(dumps.compactMap(\.key))
        for file in (try? repository.store.files(under: "\(id)/")) ?? [] where !counted.contains(file.path) {
            total += 4 * file.size
        }
        // Chunked artifacts are not files of the backup: their own (uncompressed) sizes count.
        for service in entry.services {
            guard let data = try? repository.store.read("\(id)/\(service)/metadata.json"),
                  let metadata = try? JSONDecoder().decode(ServiceMetadata.self, from: data) else { continue }
            for artifact in metadata.artifacts where artifact.chunks != nil && !artifact.format.hasPrefix("pg_dump") {
                total += artifact.size
            }
        }
        return total
    }
}
