import ArgumentParser
import AutomateManifest
import AutomateRPC
import AutomateSupervisor
import BackupContract
import BackupRepository
import ChunkStore
import Foundation
import Logging
import S3Client
import SwiftProtobuf

/// `automate restore`: bring a whole stack back from a backup repository, checking everything first.
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore the stack from a backup (restore <repository> [<id>]), list restorable backups, or show a restore's status.",
        subcommands: [Run.self, List.self, Status.self], defaultSubcommand: Run.self)

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Check a backup, then relaunch the stack from it: automate restore <repository> [<backup-id>].",
            discussion: """
                Preflight, before anything is touched: the backup is completed, checksums.json matches every \
                metadata.json, every artifact's size and sha256 match (--skip-verify skips the artifacts), \
                --sha256 matches the fingerprint, the home is empty (or --force, which stops its stack first), \
                and there is room on disk. Then the supervisor starts the gateway (serving the repository) and the \
                deployment-service only; the deployment-service checks the backup's records, bootstraps its \
                store from them, and brings up the services recorded in the backup in dependency order: each \
                service with the backup contract starts held down (it refuses its API) until its own data is \
                back, a service without it is restored while it is down and then started. Returns when every \
                short-term restore is done; search indices may still be loading (see `automate restore status`). \
                A repository other than the stack's own is read for this restore only: the gateway serves it \
                until the restore has read everything (search indices included), then the stack's own again; \
                --adopt-repository makes it the stack's repository instead.

                Point-in-time recovery (--to-time, --to-lsn, --to-backup-end): the stack's PostgreSQL is rebuilt \
                from the newest base backup that ended before the target (or <backup-id>'s) and replays the \
                archived WAL up to it, then promotes; the services' other data (files, search) comes from that \
                same backup, their databases stay as recovered. The preflight first checks that the WAL archive \
                reaches the target with no missing segment.
                """)
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The backup repository: a folder, or s3://bucket/prefix (with --s3-endpoint and --s3-credentials).")
        var repository: String
        @OptionGroup var s3: S3RepositoryOptions
        @Argument(help: "The backup id (default: the newest restorable backup).")
        var id: String?
        @Flag(help: "Restore over a home that has data; its running stack is stopped first.")
        var force = false
        @Flag(help: "Skip re-reading every artifact (records are still checked; the services check sha256 as they read).")
        var skipVerify = false
        @Option(help: "The backup's expected fingerprint (sha256 of its checksums.json, from `automate backup show`).")
        var sha256: String?
        @Flag(help: "Print nothing until the end.")
        var noProgress = false
        @Flag(help: "Print the final status as JSON.")
        var json = false
        @Flag(help: "Make the repository restored from the stack's own: later backups go there (default: it is read for this restore only).")
        var adoptRepository = false
        @Option(help: "A chunked repository: a file whose first line is its passphrase (default: $AUTOMATE_BACKUP_PASSPHRASE, else the home's).")
        var passphraseFile: String?
        @Option(help: "Point-in-time recovery: replay the archived WAL up to this moment ('2026-12-01 16:58:00Z'; no zone: UTC).")
        var toTime: String?
        @Option(help: "Point-in-time recovery: replay the archived WAL up to this WAL position (0/3000060).")
        var toLsn: String?
        @Flag(help: "Point-in-time recovery to the end of the base backup (of <backup-id>, default the newest): its earliest consistent point.")
        var toBackupEnd = false

        /// The point-in-time target the options name; nil: a normal restore.
        private func recoveryTarget() throws -> RecoveryTarget? {
            let given = [toTime != nil, toLsn != nil, toBackupEnd].filter { $0 }.count
            guard given <= 1 else { throw CLIError("give one of --to-time, --to-lsn and --to-backup-end", exitCode: 2) }
            return try CLIError.reporting(exitCode: 2) {
                if let toTime { return try RecoveryTarget.time(parsing: toTime) }
                if let toLsn { return try RecoveryTarget.lsn(parsing: toLsn) }
                return toBackupEnd ? .backupEnd : nil
            }
        }

        func run() async throws {
            let home = homeOptions.resolved
            let repo = try s3.open(repository)
            let own = try StackRepository.of(home: home)
            // A chunked repository opens with its passphrase before anything else is checked: a missing
            // or wrong one is refused here, with nothing touched.
            let opened = try ChunkedRepositoryAccess(repo).openIfChunked(passphraseFile: passphraseFile, home: home)
            let say: (String) -> Void = { line in if !(noProgress || json) { print(line); StandardOutput.flush() } }
            // A point-in-time recovery picks its backup: the newest whose base backup ends before the target.
            let plan = try recoveryTarget().map { target in try planRecovery(target, repository: repo, say: say) }
            var preflight = Preflight(home: home, repository: repo, id: plan?.base.backup.rawValue ?? id, force: force, skipVerify: skipVerify,
                                      sha256: sha256, quiet: noProgress || json)
            preflight.chunks = opened.map { ChunkCheck(repository: $0.repository, packHashesOnly: true) }
            let backupID = try preflight.run()

            // Touching starts here: stop the running stack (--force), point the gateway at the repository:
            // for this restore only (a lease), unless it is the stack's own or --adopt-repository says so.
            if SupervisorLock.holder(path: home.lockFilePath) != nil {
                say("Stopping the running stack (--force)...")
                let stop = try Stop.parse(["--home", home.path] + (noProgress || json ? ["--quiet"] : []))
                try await stop.run()
            }
            if let plan { try setClusterAside(plan, home: home, say: say) }
            if let opened { try adoptPassphrase(opened.passphrase, home: home, own: own, restored: repo, say: say) }
            var lease: RepositoryLease? = nil
            if !own.isSame(as: repo), let gateway = own.gateway {
                let values: [String: String]
                if let store = repo.store as? S3Store {
                    values = [
                        "mode": "s3", "upstream_endpoint": store.client.endpoint, "upstream_region": store.client.region,
                        "upstream_bucket": store.bucket, "upstream_prefix": store.prefix,
                        "upstream_credentials_file": try s3.installCredentials(home: home), "upstream_path_style": "true",
                    ]
                } else {
                    values = ["mode": "fs", "repository": repo.path]
                    try await giveToGateway(repo.path, gateway: gateway, home: home, say: say)
                }
                if adoptRepository {
                    try GatewayRepositoryOverlay.set(home: home, gateway: gateway, values)
                    let line = "The stack's repository is now \(repo.path) (--adopt-repository): later backups go there, not to \(own.location).\n"
                    if json { FileHandle.standardError.write(Data(line.utf8)) } else { print(line, terminator: "") }
                } else {
                    lease = try RepositoryLease.begin(home: home, gateway: gateway, values: values)
                }
            }
            do {
                try await restore(home: home, backupID: backupID, lease: lease, plan: plan, say: say)
            } catch {
                if let lease {
                    do { try await lease.end() } catch { FileHandle.standardError.write(Data("\(error)\n".utf8)) }
                }
                throw error
            }
            if let lease {
                try await lease.end()
                if !json { print("The stack's repository stays \(own.location); \(repo.path) was read for this restore only.") }
            }
        }

        /// The services read a chunked repository with the home's passphrase: the restored repository's
        /// becomes the home's. When the home's own chunked repository opened with the passphrase it had,
        /// that repository gets a key for the new one first, so one passphrase opens both.
        private func adoptPassphrase(_ passphrase: String, home: AutomateHome, own: StackRepository, restored: BackupRepository,
                                     say: (String) -> Void) throws {
            let stored = RepositoryPassphrase(home: home)
            let previous = try CLIError.reporting(exitCode: 2) { try stored.load() }
            guard previous != passphrase else { return }
            if let previous, !own.isSame(as: restored), let ownRepository = try? own.open(),
               let access = try? ChunkedRepositoryAccess(ownRepository), (try? access.format()) == .chunked {
                do {
                    let opened = try ChunkStore.Repository.open(store: access.chunks, passphrase: previous)
                    let id = try opened.addKey(passphrase: passphrase, label: "restored from \(restored.path)")
                    say("Added key \(id.prefix(12)) to \(ownRepository.path), so the restored repository's passphrase opens it too.")
                } catch {
                    throw CLIError(
                        "the home's own repository \(ownRepository.path) is chunked and could not be given a key for the restored repository's passphrase (\(error)); restore into a fresh home, or add that passphrase to it with `automate backup key add` first",
                        exitCode: 2)
                }
            }
            try CLIError.reporting(exitCode: 2) { try stored.store(passphrase) }
            say("The restored repository's passphrase is now this home's (\(stored.path)).")
        }

        /// As root, the gateway reads the repository as its own user: a folder copied in from elsewhere
        /// (owned by root, or by another machine's uids) is handed over to it, every file, and said so;
        /// one under a folder that user cannot enter is refused before anything changes.
        private func giveToGateway(_ path: String, gateway: String, home: AutomateHome, say: (String) -> Void) async throws {
            guard geteuid() == 0 else { return }
            guard let manifest = try StackLocation.discover().manifests(home: home).manifest(named: gateway),
                  manifest.runUserName != "root" else { return }
            let user = try await ServiceUsers.ensureSystemUser(manifest.runUserName, logger: Logger(label: "automate"))
            // The folder itself is handed over below; the folders above it must let the user in.
            if let problem = PathReach.problem((path as NSString).deletingLastPathComponent, for: user, need: .enter) {
                throw CLIError("the gateway serves the repository as \(user.name), which cannot reach it: \(problem); copy it somewhere it can (not under /root)", exitCode: 2)
            }
            // Every entry: a copy owned by the user at its top may still hold files of root's (keys added
            // as root, a cp -a of them).
            let count = try ServiceUsers.handOver(path, to: user)
            if count > 0 { say("Gave \(path) (\(count) files) to \(user.name), the gateway's user, which reads it for the restore.") }
        }

        /// Checks that the repository can recover to `target` and says from what, before anything changes.
        private func planRecovery(_ target: RecoveryTarget, repository: BackupRepository, say: (String) -> Void) throws -> PointInTimePlanner.Plan {
            let completed = try CLIError.reporting(exitCode: 2) { try repository.list().filter { $0.state == .completed }.map(\.id) }
            var chosen: BackupID? = nil
            if let id {
                guard let parsed = BackupID(id) else { throw CLIError("\"\(id)\" is not a backup id (yyyyMMddHHmmss)", exitCode: 2) }
                chosen = parsed
            }
            let plan = try CLIError.reporting(exitCode: 2) { try PointInTimePlanner(repository: repository).plan(target, backups: completed, chosen: chosen) }
            say("Point-in-time recovery to \(target): from backup \(plan.base.backup)'s base backup (consistent from \(PointInTimePlanner.text(plan.base.finishedAt))), then WAL of cluster \(plan.base.cluster) from \(plan.base.start) on (archived up to \(plan.newestArchived), written until \(PointInTimePlanner.text(plan.newestWrittenAt))).")
            return plan
        }

        /// A point-in-time recovery rebuilds the cluster in an empty data folder: one that holds a cluster
        /// (a restore over a home, --force) is moved aside, kept, and said so.
        private func setClusterAside(_ plan: PointInTimePlanner.Plan, home: AutomateHome, say: (String) -> Void) throws {
            let manifests = try StackLocation.discover().manifests(home: home, failure: "invalid manifests, nothing was changed")
            guard let server = manifests.manifest(named: plan.base.service) else {
                throw CLIError("the backup's base backup is of \(plan.base.service), which this stack has no manifest for; nothing was changed", exitCode: 2)
            }
            let folder = home.dataDirectory + "/" + server.dataDir
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            guard !contents.isEmpty else { return }
            let aside = folder + ".before-restore-" + BackupID(date: Date()).rawValue
            guard rename(folder, aside) == 0 else {
                throw CLIError("cannot move \(folder) aside to \(aside) for the recovery: \(String(cString: strerror(errno)))", exitCode: 1)
            }
            say("Moved the cluster in \(folder) aside to \(aside) (kept; delete it once the restore is what you want).")
        }

        /// Starts the supervisor with the gateway and the deployment-service only (every other service is
        /// held) and runs the restore, which brings the rest up as their data comes back; with a lease,
        /// follows it to its very end (the gateway serves the lent repository until the search indices
        /// are loaded from it).
        private func restore(home: AutomateHome, backupID: BackupID, lease: RepositoryLease?, plan: PointInTimePlanner.Plan?,
                             say: (String) -> Void) async throws {
            let location = try StackLocation.discover()
            let manifests = try location.manifests(home: home, failure: "invalid manifests, nothing was started")
            let first = manifests.startOrder.filter { name in
                let kind = manifests.manifest(named: name)?.kind
                return kind == .gateway || kind == .orchestrator
            }
            guard first.contains("deployment-service") else {
                throw CLIError("this stack has no deployment-service manifest in \(location.servicesDirectory): nothing can restore it", exitCode: 2)
            }
            say("Starting the supervisor with \(first.joined(separator: " and ")); the other services stay held until their data is back...")
            let start = try Start.parse(["--home", home.path, "--quiet"] + first.flatMap { ["--start-only", $0] })
            try await start.run()

            let client = try await ServiceConnection.connect("deployment-service", home: home)
            defer { Task { await client.close() } }
            var request = Automate_Deployment_V1_StackRestoreRequest()
            request.backupID = backupID.rawValue
            request.restoreID = "r" + BackupID(date: Date()).rawValue + "-" + String(UInt16.random(in: 0...UInt16.max), radix: 16)
            if let plan {
                request.pointInTime.kind = plan.target.wire.kind
                request.pointInTime.value = plan.target.wire.value
                request.pointInTime.cluster = plan.base.cluster
            }
            let started: StackRestore
            do { started = try await client.call(DeploymentService.restore, request, timeout: .seconds(300)) } catch {
                throw ServiceConnection.describe(error)
            }
            say("Restoring backup \(backupID) (restore id \(started.restoreID))")
            let view = RestoreProgressView(quiet: noProgress || json)
            var last = started
            var watch = Automate_Deployment_V1_StackRestoreStatusRequest()
            watch.restoreID = started.restoreID
            var loadingSaid = false
            do {
                for try await s in client.stream(DeploymentService.watchRestore, watch) {
                    last = s
                    view.show(s)
                    if s.shortTermState != .running && (lease == nil || s.shortTermState != .completed || s.longTermState != .running) { break }
                    if lease != nil, s.shortTermState == .completed, !loadingSaid {
                        say("Every service's data is back; loading the search indices from the repository before the gateway goes back to the stack's own...")
                        loadingSaid = true
                    }
                }
            } catch {
                throw CLIError("lost the deployment-service during restore \(started.restoreID): \(error); see `automate restore status`")
            }
            if json { print(try last.jsonString()) }
            guard last.shortTermState == .completed else {
                throw CLIError("restore \(last.restoreID) of backup \(backupID) failed: \(last.error)\nThe services it restored are stopped; fix the cause and run the same `automate restore` again (with --force).")
            }
            if lease != nil, last.longTermState == .failed {
                throw CLIError("restore \(last.restoreID) of backup \(backupID): the search indices failed to load: \(last.error); see `automate restore status \(last.restoreID)`")
            }
            let loading = last.longTerm.filter { $0.state == .running }.map(\.service)
            if !json {
                print("Restored backup \(backupID) into \(home.path) (restore \(last.restoreID)).")
                if last.hasRecovery, !last.recovery.reachedLsn.isEmpty {
                    let r = last.recovery
                    let transaction = r.lastTransactionAt.isEmpty ? "no transaction replayed" : "last transaction committed at \(r.lastTransactionAt)"
                    print("\(r.service) recovered from backup \(r.baseBackupID)'s base backup to \(plan?.target.description ?? r.target.kind): reached WAL position \(r.reachedLsn), \(transaction); it now writes on timeline \(r.timeline).")
                }
                if !loading.isEmpty {
                    print("Still loading in the background: \(loading.joined(separator: ", ")); see `automate restore status \(last.restoreID)`.")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The backups in a repository, restorable ones marked (no stack needed).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The backup repository: a folder or s3://bucket/prefix (default: the one the stack's gateway is configured with).")
        var repository: String?
        @OptionGroup var s3: S3RepositoryOptions
        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let repo = try repository.map(s3.open) ?? StackRepository.of(home: homeOptions.resolved).open()
            let entries: [BackupRepository.Entry]
            do { entries = try repo.list() } catch { throw CLIError("\(error)") }
            try BackupCommand.List.render(entries, repository: repo, json: json)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A restore's short-term and long-term status (default: the last restore).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The restore id.")
        var restoreID: String?
        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let client = try await ServiceConnection.connect("deployment-service", home: homeOptions.resolved)
            defer { Task { await client.close() } }
            var request = Automate_Deployment_V1_StackRestoreStatusRequest()
            request.restoreID = restoreID ?? ""
            let s: StackRestore
            do { s = try await client.call(DeploymentService.restoreStatus, request) } catch {
                throw ServiceConnection.describe(error)
            }
            if json { print(try s.jsonString()); return }
            print("restore \(s.restoreID) of backup \(s.backupID): short-term \(BackupProgressView.stateName(s.shortTermState)), long-term \(BackupProgressView.stateName(s.longTermState))")
            let width = max(18, s.shortTerm.map(\.service.count).max() ?? 0)
            for (short, long) in zip(s.shortTerm, s.longTerm) {
                print("  \(short.service.padding(toLength: width, withPad: " ", startingAt: 0))  short-term \(BackupProgressView.stateName(short.state).padding(toLength: 10, withPad: " ", startingAt: 0))  long-term \(BackupProgressView.stateName(long.state))\(long.error.isEmpty ? "" : "  " + long.error)")
            }
            if !s.error.isEmpty { print("error: \(s.error)") }
        }
    }
}

/// Per-service restore progress (short-term part, then what still loads).
final class RestoreProgressView {
    private let inner: BackupProgressView
    init(quiet: Bool) { inner = BackupProgressView(quiet: quiet) }

    func show(_ s: StackRestore) {
        var fake = StackBackup()
        fake.services = zip(s.shortTerm, s.longTerm).map { short, long in
            var x = ServiceBackupStatus()
            x.service = short.service
            x.state = short.state
            x.progress = short.state == .completed ? long.progress : short.progress
            if short.state == .completed, long.state == .running { x.state = .running; x.progress.phase = "loading" }
            x.error = short.error.isEmpty ? long.error : short.error
            return x
        }
        inner.show(fake)
    }
}

/// Sets `[config]` keys of the gateway's overlay in `home` (other keys kept), so that the restored stack's
/// gateway serves the repository the backup is read from.
enum GatewayRepositoryOverlay {
    static func set(home: AutomateHome, gateway: String, _ values: [String: String]) throws {
        let overlay = home.configOverlayPath(service: gateway)
        let existing = (try? String(contentsOfFile: overlay, encoding: .utf8)) ?? ""
        if existing.isEmpty, values == ["mode": "fs", "repository": home.backupsDirectory] { return }
        var lines = existing.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeAll { line in
            let key = line.split(separator: "=").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            return values[key] != nil
        }
        func quoted(_ v: String) -> String {
            v == "true" || v == "false" ? v : "\"" + v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let entries = values.keys.sorted().map { "\($0) = \(quoted(values[$0]!))" }
        if let i = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "[config]" }) {
            lines.insert(contentsOf: entries, at: i + 1)
        } else {
            lines.insert(contentsOf: ["[config]"] + entries, at: 0)
        }
        try FileManager.default.createDirectory(atPath: home.configDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(lines.joined(separator: "\n"), to: overlay, mode: 0o644)
    }
}

/// `--s3-endpoint`, `--s3-region`, `--s3-credentials`: reading a repository kept in S3.
struct S3RepositoryOptions: ParsableArguments {
    @Option(help: "The S3 endpoint of an s3:// repository (e.g. https://s3.eu-west-1.amazonaws.com).")
    var s3Endpoint: String?
    @Option(help: "The S3 region of an s3:// repository.")
    var s3Region = "us-east-1"
    @Option(help: "A file with the S3 key pair (two lines: access key id, secret; or access_key_id = / secret_access_key =). The gateway's user must be able to read it.")
    var s3Credentials: String?

    func credentialsPath() throws -> String {
        guard let path = s3Credentials else { throw CLIError("an s3:// repository needs --s3-credentials FILE", exitCode: 2) }
        return path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// Copies the key pair into `<home>/config/backup-gateway.upstream-credentials` (0600, owned by the
    /// gateway's user when run as root) for the restored stack's gateway; returns that path.
    func installCredentials(home: AutomateHome) throws -> String {
        let source = try credentialsPath()
        guard let text = try? String(contentsOfFile: source, encoding: .utf8) else {
            throw CLIError("cannot read \(source)", exitCode: 2)
        }
        let destination = home.configDirectory + "/backup-gateway.upstream-credentials"
        var owner: ServiceUser? = nil
        if geteuid() == 0 {
            let location = try StackLocation.discover()
            let manifests = try? ManifestLoader.load(servicesDirectory: location.servicesDirectory, home: home)
            if let name = manifests?.services.first(where: { $0.kind == .gateway })?.runUserName, name != "root" { owner = try? ServiceUser.named(name) }
        }
        try FileManager.default.createDirectory(atPath: home.configDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(text, to: destination, mode: 0o600, owner: owner)
        return destination
    }

    /// A folder path or `s3://bucket/prefix`.
    func open(_ text: String) throws -> BackupRepository {
        guard let (bucket, prefix) = S3Store.parse(text) else {
            return BackupRepository(path: text.hasPrefix("/") ? text : FileManager.default.currentDirectoryPath + "/" + text)
        }
        guard let endpoint = s3Endpoint else { throw CLIError("an s3:// repository needs --s3-endpoint URL", exitCode: 2) }
        let credentials: S3Credentials
        do { credentials = try S3Credentials.load(path: try credentialsPath()) } catch let e as CLIError { throw e } catch {
            throw CLIError("cannot read the S3 credentials: \(error)", exitCode: 2)
        }
        return BackupRepository(store: S3Store(client: S3Client(endpoint: endpoint, region: s3Region, credentials: credentials),
                                               bucket: bucket, prefix: prefix))
    }
}
