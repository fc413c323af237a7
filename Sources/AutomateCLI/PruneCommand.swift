import ArgumentParser
import AutomateSupervisor
import BackupRepository
import ChunkStore
import Foundation
import S3Client

/// `automate backup prune`: removes the chunks of a chunked repository that no backup names any more.
struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove the chunks no remaining backup needs (chunked repositories; run after `backup delete`).",
        discussion: """
            Takes the repository's exclusive lock (refused, naming the holder, while a backup or restore holds its \
            shared one), lists every chunk the backups' records name, then deletes packs holding only unused \
            chunks, repacks packs that are mostly unused (--repack-unused-above), writes the new index before \
            removing the old, and deletes packs last: killed at any point, nothing a backup needs is lost and the \
            next prune finishes the job. The systemd timer runs it after each scheduled backup's retention.
            """)
    @OptionGroup var options: BackupCommand.RepositoryOptions
    @Option(help: "A file whose first line is the repository's passphrase (default: $AUTOMATE_BACKUP_PASSPHRASE, else the home's).")
    var passphraseFile: String?
    @Option(help: "Repack a pack when more than this percentage of its bytes is unused.")
    var repackUnusedAbove: Double = 20
    @Flag(help: "Print what would be removed, change nothing.")
    var dryRun = false
    @Flag(help: "Print the report as JSON.")
    var json = false

    /// The stack's repository as the running gateway serves it (the home's key pair), nil when the stack
    /// is not running or has no gateway.
    static func throughGateway(home: AutomateHome) throws -> BackupRepository? {
        guard SupervisorLock.holder(path: home.lockFilePath) != nil else { return nil }
        let store = GatewaySecrets(home: home, owner: nil)
        guard let credentials = try? store.load(),
              let manifests = try? StackLocation.discover().manifests(home: home),
              let access = GatewayAccess.from(manifests: manifests, secrets: store, credentials: credentials) else { return nil }
        let client = S3Client(
            endpoint: access.endpoint, region: access.region,
            credentials: S3Credentials(accessKeyID: credentials.accessKeyID, secretAccessKey: credentials.secretAccessKey))
        return BackupRepository(store: S3Store(client: client, bucket: access.bucket, prefix: ""))
    }

    func run() async throws {
        guard (0...100).contains(repackUnusedAbove) else {
            throw CLIError("--repack-unused-above \(repackUnusedAbove): give a percentage from 0 to 100", exitCode: 2)
        }
        let home = options.homeOptions.resolved
        // The stack's own repository, while the stack runs: through its gateway, which writes as the
        // repository's owner (and reaches an S3 upstream) so nothing here needs to change owners.
        let viaGateway = options.repository == nil ? try Self.throughGateway(home: home) : nil
        let repository = try viaGateway ?? options.resolved()
        let access = try ChunkedRepositoryAccess(repository)
        guard let opened = try access.openIfChunked(passphraseFile: passphraseFile, home: home) else {
            if !json { print("\(repository.path) is a plain repository: deleting a backup frees its files at once; nothing to prune.") }
            return
        }
        // The crash tests' fault-injection point (see KillSwitchStore); the store itself otherwise.
        let armed = KillSwitchStore.arm(opened.repository.store)
        let store = armed is KillSwitchStore
            ? try CLIError.reporting { try ChunkStore.Repository.open(store: armed, passphrase: opened.passphrase) } : opened.repository
        let report: PruneReport = try CLIError.reporting(exitCode: 1) {
            let lock = try store.lock(exclusive: !dryRun, purpose: dryRun ? "prune --dry-run" : "prune")
            defer { try? lock.release() }
            // Under the lock: no backup is writing, so every chunk in use is named by a record now.
            let references = try ChunkReferences.collect(repository)
            return try store.prune(referenced: references.blobs, lock: lock, repackUnusedAbove: repackUnusedAbove / 100, dryRun: dryRun)
        }
        if !dryRun && viaGateway == nil { try ChunkedRepositoryAccess.giveToOwner(repository) }
        if json {
            let object: [String: Any] = [
                "dry_run": report.dryRun, "packs_before": report.packsBefore, "packs_deleted": report.packsDeleted,
                "orphan_packs_deleted": report.orphanPacksDeleted, "packs_repacked": report.packsRepacked, "packs_written": report.packsWritten,
                "blobs_removed": report.blobsRemoved, "blobs_kept": report.blobsKept, "bytes_before": report.bytesBefore,
                "bytes_after": report.bytesAfter, "bytes_freed": report.bytesFreed, "seconds": report.duration.seconds,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        let verb = dryRun ? "would free" : "freed"
        print("""
            \(dryRun ? "Dry run: " : "")\(report.blobsRemoved) unused chunks in \(report.packsDeleted) packs deleted\
            \(report.orphanPacksDeleted > 0 ? " (\(report.orphanPacksDeleted) left by interrupted backups)" : ""), \
            \(report.packsRepacked) repacked into \(report.packsWritten); \(report.blobsKept) chunks kept.
            Chunk store \(BackupTable.bytes(UInt64(max(0, report.bytesBefore)))) → \(BackupTable.bytes(UInt64(max(0, report.bytesAfter)))) (\(verb) \(BackupTable.bytes(UInt64(max(0, report.bytesFreed))))) in \(String(format: "%.1f", report.duration.seconds))s.
            """)
    }
}
