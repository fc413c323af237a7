import AutomateSupervisor
import BackupRepository
import Foundation
import S3Client
import Testing

/// The chunked repository format on the real stack: a whole-stack round trip through deduplicated,
/// encrypted chunks; keys and passphrases; damaged packs; what a second backup costs.
@Suite("Chunked repositories", .serialized)
struct ChunkedRepositoryTests {
    /// Bytes of every file under `path` (the repository's real size on disk).
    static func bytes(under path: String) -> UInt64 {
        var total: UInt64 = 0
        let walker = FileManager.default.enumerator(atPath: path)
        while let relative = walker?.nextObject() as? String {
            var info = stat()
            if lstat(path + "/" + relative, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { total += UInt64(info.st_size) }
        }
        return total
    }

    /// Every artifact of a backup's services' metadata.json, with its service.
    static func artifacts(_ repository: String, _ id: String) throws -> [(service: String, record: ArtifactRecord)] {
        var out: [(String, ArtifactRecord)] = []
        for service in try FileManager.default.contentsOfDirectory(atPath: repository + "/" + id) {
            let path = repository + "/\(id)/\(service)/metadata.json"
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            let metadata = try JSONDecoder().decode(ServiceMetadata.self, from: data)
            out += metadata.artifacts.map { (service, $0) }
        }
        return out
    }

    @Test("round trip through a chunked repository: nothing in clear, no restore without the passphrase, a wrong one refused, a second key restores")
    func roundTrip() async throws {
        let stack = try TestStack(name: "chunked-trip")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack(repositoryFormat: "chunked")
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await RestoreTests.addFileVariety(stack)
        let before = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")

        let id = try await stack.createBackup()
        let repository = stack.home.backupsDirectory
        let format = try String(contentsOfFile: repository + "/repository.json", encoding: .utf8)
        #expect(format.contains("\"chunked\""), "\(format)")
        // Every data artifact is chunks: no dump, tarball or export file of its own.
        let records = try Self.artifacts(repository, id)
        let data = records.filter { ["pg_dump_custom_chunked", "tar_chunked", "ndjson_export", "sqlite"].contains($0.record.format) }
        #expect(data.count >= 7 && data.allSatisfy { $0.record.chunks != nil }, "\(records.map { "\($0.service)/\($0.record.path) \($0.record.format)" })")
        #expect(!records.contains { $0.record.path.hasSuffix(".zst") })
        // Encrypted: the sample data's words appear nowhere in the repository's bytes.
        for secret in ["kernel too old", "ssh hardening applied", "secret profile", "the core team"] {
            let grep = try await stack.shell("grep -rlF '\(secret)' '\(repository)' || true")
            #expect(grep.output.isEmpty, "\"\(secret)\" in clear in \(grep.output)")
        }
        let verify = try await stack.automate(["backup", "verify", id])
        #expect(verify.succeeded && verify.output.contains("chunks authenticated"), "\(verify.output)\(verify.error)")

        // Keys: a second one added, the home's removed; the exported old passphrase then opens nothing.
        let old = stack.root + "/old.passphrase", new = stack.root + "/new.passphrase"
        let export = try await stack.automate(["backup", "key", "export", "--to", old])
        try #require(export.succeeded, "\(export.error)")
        try "a second passphrase, kept by the operator\n".write(toFile: new, atomically: true, encoding: .utf8)
        let keys = try await stack.automate(["backup", "key", "list"])
        let first = try #require(keys.output.split(separator: " ").first.map(String.init))
        let add = try await stack.shell("AUTOMATE_BACKUP_NEW_PASSPHRASE=\"$(head -1 '\(new)')\" automate backup key add --label operator")
        try #require(add.succeeded, "\(add.output)\(add.error)")
        let remove = try await stack.automate(["backup", "key", "remove", first, "--passphrase-file", new])
        try #require(remove.succeeded, "\(remove.output)\(remove.error)")

        let copy = try await stack.copyRepositoryAndLoseHome(ports)
        // A fresh home has no passphrase: refused, naming what is missing; nothing is touched.
        let missing = try await stack.automate(["restore", copy])
        #expect(!missing.succeeded && missing.error.contains("chunked") && missing.error.contains("passphrase"), "\(missing.output)\(missing.error)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.dataDirectory + "/teams-service"))
        // The removed key's passphrase: refused before anything is touched.
        let wrong = try await stack.automate(["restore", copy, "--passphrase-file", old])
        #expect(!wrong.succeeded && wrong.error.contains("opens no key"), "\(wrong.output)\(wrong.error)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.dataDirectory + "/teams-service"))

        let restore = try await stack.automate(["restore", copy, "--passphrase-file", new])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        let final = try await RestoreTests.waitForLongTerm(stack, try #require(RestoreTests.restoreID(in: restore.output)))
        #expect(final.longTermState == .completed, "\(final)")
        let after = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(after == before, "\(after.differences(from: before))")
        // The home took the restored repository's passphrase: the services back up into it again.
        let again = try await stack.automate(["backup", "create", "--no-progress"])
        #expect(again.succeeded, "\(again.output)\(again.error)")
    }

    @Test("a flipped byte in a pack: verify names the backups that use it, restore refuses before touching anything")
    func flippedByte() async throws {
        let stack = try TestStack(name: "chunked-flip")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack(repositoryFormat: "chunked")
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        func packs(_ repository: String) throws -> Set<String> {
            Set(try FileManager.default.subpathsOfDirectory(atPath: repository + "/chunks/data").filter { $0.count > 60 })
        }
        let first = try await stack.createBackup()
        let firstPacks = try packs(stack.home.backupsDirectory)
        let second = try await stack.createBackup()
        #expect(try packs(stack.home.backupsDirectory).count > firstPacks.count)
        let passphrase = stack.root + "/passphrase"
        try #require(try await stack.automate(["backup", "key", "export", "--to", passphrase]).succeeded)
        let copy = try await stack.copyRepositoryAndLoseHome(ports)

        // One byte flipped in each pack the first backup wrote (a pack per service's session); the second
        // backup reuses some of their chunks (the unchanged files and search export).
        for pack in firstPacks.map({ copy + "/chunks/data/" + $0 }) {
            let size = ((try? FileManager.default.attributesOfItem(atPath: pack))?[.size] as? UInt64) ?? 0
            let flip = try await stack.shell("""
                printf "\\\\$(printf '%03o' $(( $(od -An -tu1 -j \(size / 3) -N1 '\(pack)') ^ 255 )))" | dd of='\(pack)' bs=1 seek=\(size / 3) conv=notrunc status=none
                """)
            try #require(flip.succeeded, "\(flip.error)")
        }

        let verify = try await stack.automate(["backup", "verify", "--repository", copy, "--passphrase-file", passphrase])
        #expect(verify.status == .exited(1), "\(verify.output)\(verify.error)")
        for id in [first, second] {
            #expect(verify.output.contains("\(id)  completed"), "\(verify.output)")
        }
        #expect(verify.output.contains("corrupted") && verify.error.contains("2 of 2 backups have faults"), "\(verify.output)\(verify.error)")

        let restore = try await stack.automate(["restore", copy, "--passphrase-file", passphrase])
        #expect(!restore.succeeded && restore.error.contains("failed its checks; nothing was changed"), "\(restore.output)\(restore.error)")
        #expect(!FileManager.default.fileExists(atPath: stack.home.dataDirectory + "/teams-service"))
    }

    @Test("a backup taken with the gateway in S3 mode (moto upstream) is chunks in the bucket and restores from S3")
    func s3Mode() async throws {
        let moto = try await MotoUpstream()
        defer { moto.stop() }
        let upstream = moto.client, endpoint = moto.endpoint
        let stack = try TestStack(name: "chunked-s3")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack(repositoryFormat: "chunked", archiving: true)
        let credentials = try await moto.useAsUpstream(of: stack, ports: ports, prefix: "site-b/")
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let before = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        let id = try await stack.createBackup()
        let keys = try upstream.listObjectsSync(bucket: "automate-backups", prefix: "site-b/").map(\.key)
        #expect(keys.contains("site-b/repository.json") && keys.contains { $0.hasPrefix("site-b/chunks/data/") }, "\(keys)")
        #expect(!keys.contains { $0.hasSuffix(".zst") || $0.hasSuffix(".ndjson") }, "\(keys)")
        // The base backup's last WAL segment is archived in the bucket too (a record naming its chunks).
        let base = try upstream.getObjectSync(bucket: "automate-backups", key: "site-b/\(id)/automate-postgresql/pg_base/metadata.json")
        let stopWAL = try #require((try JSONSerialization.jsonObject(with: Data(base)) as? [String: Any])?["stop_wal"] as? String)
        #expect(keys.contains { $0.hasPrefix("site-b/automate-postgresql-wal/") && $0.hasSuffix("/\(stopWAL).json") }, "\(keys)")
        let passphrase = stack.root + "/passphrase"
        try #require(try await stack.automate(["backup", "key", "export", "--to", passphrase]).succeeded)
        try await stack.loseHome(ports)

        let s3 = ["--s3-endpoint", endpoint, "--s3-credentials", credentials]
        let restore = try await stack.automate(["restore", "s3://automate-backups/site-b", id, "--passphrase-file", passphrase] + s3)
        try #require(restore.succeeded, "\(stack.failure(restore))")
        let final = try await RestoreTests.waitForLongTerm(stack, try #require(RestoreTests.restoreID(in: restore.output)))
        #expect(final.longTermState == .completed, "\(final)")
        let after = try await StackSnapshot.take(stack, searchPort: "\(ports.search)")
        #expect(after == before, "\(after.differences(from: before))")
    }
}

/// What backups cost in a chunked repository as data changes a little each time, and prune.
@Suite("Chunked repositories: incremental cost and prune", .serialized)
struct ChunkedIncrementalTests {
    static let files = 50
    static let fileMiB = 2

    /// 50 files of 2 MiB (random) beside the profiles, and a table of ~30 MB (light enough to run beside
    /// the other suites).
    static func loadData(_ stack: TestStack) async throws {
        let profiles = stack.home.dataDirectory + "/compliance-service/profiles"
        let f = try await stack.shell("""
            for i in $(seq 1 \(files)); do head -c \(fileMiB)M /dev/urandom > '\(profiles)'/bulk-$i.bin; done && \
            chown --reference='\(profiles)' '\(profiles)'/bulk-*.bin
            """)
        guard f.succeeded else { throw TestFailure("files: \(f.error)") }
        let t = try await stack.automate(["psql", "teams_service", "--", "-c",
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 250000) g"])
        guard t.succeeded else { throw TestFailure("table: \(t.error)") }
    }

    /// 2% changed: one file of the 50 modified (512 KiB in its middle rewritten), rows amounting to 2% of
    /// the table appended.
    static func change(_ stack: TestStack, round: Int) async throws {
        let profiles = stack.home.dataDirectory + "/compliance-service/profiles"
        let f = try await stack.shell("head -c 512K /dev/urandom | dd of='\(profiles)/bulk-\(round).bin' bs=512K seek=1 conv=notrunc status=none")
        guard f.succeeded else { throw TestFailure("file: \(f.error)") }
        let t = try await stack.automate(["psql", "teams_service", "--", "-c",
            "INSERT INTO filler SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(\(round * 1_000_000), \(round * 1_000_000 + 4_999)) g"])
        guard t.succeeded else { throw TestFailure("rows: \(t.error)") }
    }

    /// The filler table's row count and checksum, and the bulk files' sha256.
    static func fingerprint(_ stack: TestStack) async throws -> String {
        let t = try await stack.shell("automate psql teams_service -- -AtXq -c 'SELECT count(*), md5(string_agg(pad, chr(44) ORDER BY id)) FROM filler'")
        let f = try await stack.shell("cd '\(stack.home.dataDirectory)/compliance-service/profiles' && sha256sum bulk-*.bin | sort | sha256sum")
        guard t.succeeded, f.succeeded else { throw TestFailure("fingerprint: \(t.error)\(f.error)") }
        return t.output + f.output
    }

    @Test("2% changed: the second backup stores at most 2% of the first; seven backups stay within 1.3x of one; prune frees what deleted backups alone used and waits for a running backup; each backup restores its own data")
    func incremental() async throws {
        let stack = try TestStack(name: "chunked-incr")
        defer { Task { await stack.tearDown() } }
        // What the services' backups store: no WAL archive, no base backup (WALArchivingTests has those).
        let ports = try stack.useFullStack(repositoryFormat: "chunked")
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        try await Self.loadData(stack)
        // Chunks scaled to the data: 128 KiB on average for ~120 MB here, as 1 MiB for gigabytes (the
        // benchmark, scripts/bench-backup.sh, measures the default on 1 GB + 1 GB): what a change costs
        // beyond its own bytes is about a chunk on each side of it.
        let initialize = try await stack.automate(["backup", "repository", "init", "--average-chunk-kib", "128"])
        try #require(initialize.succeeded, "\(initialize.output)\(initialize.error)")
        let chunks = stack.home.backupsDirectory + "/chunks"

        var fingerprints: [String: String] = [:]
        let first = try await stack.createBackup()
        fingerprints[first] = try await Self.fingerprint(stack)
        let full = ChunkedRepositoryTests.bytes(under: chunks)
        try await Self.change(stack, round: 1)
        let second = try await stack.createBackup()
        fingerprints[second] = try await Self.fingerprint(stack)
        let added = ChunkedRepositoryTests.bytes(under: chunks) - full
        print("chunked incremental: first backup \(full) bytes, second after 2% change +\(added) (\(String(format: "%.2f", Double(added) * 100 / Double(full)))%)")
        for (service, record) in try ChunkedRepositoryTests.artifacts(stack.home.backupsDirectory, second) where record.chunks != nil {
            let c = record.chunks!
            print("  \(service)/\(record.path): \(c.size) bytes, \(c.newBytes) new (\(c.storedBytes) stored), \(c.blobs.count) chunks")
        }
        #expect(Double(added) <= 0.02 * Double(full), "second backup stored \(added) bytes, the first \(full)")

        var ids = [first, second]
        for round in 2...6 {
            try await Self.change(stack, round: round)
            let id: String
            if round == 2 {
                // New and reused bytes, per service and in all, in --json (and in the text of the others).
                let json = try await stack.automate(["backup", "create", "--json"])
                try #require(json.succeeded, "\(json.output)\(json.error)")
                let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
                id = try #require(object["backupId"] as? String)
                let new = UInt64(object["newBytes"] as? String ?? "") ?? 0, reused = UInt64(object["reusedBytes"] as? String ?? "") ?? 0
                #expect(new > 0 && reused > 20 * new, "new \(new), reused \(reused)")
                let services = object["services"] as? [[String: Any]] ?? []
                let teams = services.first { $0["service"] as? String == "teams-service" }?["progress"] as? [String: Any]
                #expect(UInt64(teams?["reusedBytes"] as? String ?? "") ?? 0 > 0, "\(services)")
            } else {
                let text = try await stack.automate(["backup", "create", "--no-progress"])
                try #require(text.succeeded && text.output.hasPrefix("Created backup "), "\(text.output)\(text.error)")
                #expect(text.output.contains(" new, ") && text.output.contains(" reused; fingerprint "), "\(text.output)")
                id = String(text.output.split(separator: " ")[2])
            }
            fingerprints[id] = try await Self.fingerprint(stack)
            ids.append(id)
        }
        let seven = ChunkedRepositoryTests.bytes(under: chunks)
        print("chunked incremental: seven backups \(seven) bytes (\(String(format: "%.2f", Double(seven) / Double(full)))x one)")
        #expect(Double(seven) <= 1.3 * Double(full), "seven backups take \(seven) bytes, one \(full)")

        // A prune during a running backup: refused (naming the lock) while one of the backup's sessions
        // holds its lock, or done between two sessions (their chunks are named by then); either way the
        // backup completes, and it verifies and restores below.
        let running = try await stack.startBackup()
        let locks = chunks + "/locks"
        let deadline = ContinuousClock.now + .seconds(60)
        while ((try? FileManager.default.contentsOfDirectory(atPath: locks)) ?? []).isEmpty && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let refused = try await stack.automate(["backup", "prune"])
        #expect(refused.succeeded || refused.error.contains("locked by"), "\(refused.output)\(refused.error)")
        let done = try await stack.watchBackup(running)
        #expect(done.state == .completed, "\(done.error)")
        fingerprints[running] = try await Self.fingerprint(stack)
        ids.append(running)

        // Retention: the four oldest go; prune frees what only they used (the first versions of the
        // parts rewritten in rounds 1 to 4), and a second prune finds nothing.
        let delete = try await stack.automate(["backup", "delete", "--yes"] + Array(ids.prefix(4)))
        try #require(delete.succeeded, "\(delete.output)\(delete.error)")
        let before = ChunkedRepositoryTests.bytes(under: chunks)
        // kill -9 of the prune at several points (just before its 1st, 2nd, 4th, ... change): each time
        // every remaining backup still has every chunk (a sample of packs read whole).
        for point in [0, 1, 3, 6, 10, 15] {
            let killed = try await stack.shell("AUTOMATE_FAULT_KILL_PRUNE_AFTER=\(point) automate backup prune")
            if killed.succeeded { break }
            #expect(killed.status == .exited(137), "prune killed before change \(point + 1): \(killed.output)\(killed.error)")
            let check = try await stack.automate(["backup", "verify", "--read-data-subset", "10%"])
            #expect(check.succeeded, "after a prune killed before change \(point + 1): \(check.output)\(check.error)")
        }
        // Repacking every pack with any unused chunk: all that only the deleted backups used goes.
        let prune = try await stack.automate(["backup", "prune", "--repack-unused-above", "0"])
        let leftLocks = (try? FileManager.default.contentsOfDirectory(atPath: locks)) ?? []
        try #require(prune.succeeded, "\(prune.output)\(prune.error) locks: \(leftLocks.map { (try? String(contentsOfFile: locks + "/" + $0, encoding: .utf8)) ?? $0 })")
        let after = ChunkedRepositoryTests.bytes(under: chunks)
        print("chunked prune: \(before) → \(after) bytes: \(prune.output)")
        #expect(after + UInt64(3 << 19) < before, "\(prune.output)")
        let again = try await stack.automate(["backup", "prune", "--json"])
        #expect(again.succeeded && again.output.contains("\"bytes_freed\":0"), "\(again.output)\(again.error)")
        let verify = try await stack.automate(["backup", "verify"])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")

        // The oldest kept backup and the one a prune ran beside restore their own data.
        let passphrase = stack.root + "/passphrase"
        try #require(try await stack.automate(["backup", "key", "export", "--to", passphrase]).succeeded)
        let copy = try await stack.copyRepositoryAndLoseHome(ports)
        for id in [ids[4], running] {
            let restore = try await stack.automate(["restore", copy, id, "--passphrase-file", passphrase, "--force"])
            try #require(restore.succeeded, "\(stack.failure(restore))")
            #expect(try await Self.fingerprint(stack) == fingerprints[id], "backup \(id)")
        }
    }
}
