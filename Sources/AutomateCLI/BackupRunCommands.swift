import ArgumentParser
import AutomateManifest
import AutomateRPC
import AutomateSupervisor
import BackupContract
import BackupRepository
import Foundation
import SwiftProtobuf

/// `automate backup create|status|cancel|delete`: through the running stack's deployment-service.
extension BackupCommand {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Back up every service of the running stack under one id.",
            discussion: "Shows per-service progress (bars on a terminal, plain lines otherwise) and ends with `Created backup <id>`; exits 1 when the backup failed, naming the service and the reason.")
        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print nothing until the end.")
        var noProgress = false
        @Flag(help: "Print the final status as JSON.")
        var json = false
        @Option(help: "Seconds a service may take before the backup fails (default: the deployment-service's, 1 hour).")
        var serviceTimeout: UInt32?

        func run() async throws {
            let home = homeOptions.resolved
            let client = try await ServiceConnection.connect("deployment-service", home: home)
            defer { Task { await client.close() } }
            var request = Automate_Deployment_V1_CreateStackBackupRequest()
            request.serviceTimeoutSeconds = serviceTimeout ?? 0
            let started: StackBackup
            do { started = try await client.call(DeploymentService.createBackup, request) } catch {
                throw ServiceConnection.describe(error)
            }
            let view = BackupProgressView(quiet: noProgress || json)
            var final = started
            var watch = Automate_Deployment_V1_StackBackupRequest()
            watch.backupID = started.backupID
            do {
                for try await s in client.stream(DeploymentService.watchBackup, watch) {
                    final = s
                    view.show(s)
                }
            } catch {
                throw CLIError("lost the deployment-service while backup \(started.backupID) ran: \(error); see `automate backup status`")
            }
            if json { print(try final.jsonString()) }
            switch final.state {
            case .completed:
                if !json {
                    print("Created backup \(final.backupID) (\(BackupTable.bytes(final.bytesWritten)): \(BackupTable.bytes(final.newBytes)) new, \(BackupTable.bytes(final.reusedBytes)) reused; fingerprint \(final.fingerprint))")
                }
            case .cancelled:
                throw CLIError("backup \(final.backupID) was cancelled; it is marked failed")
            default:
                throw CLIError("backup \(final.backupID) failed: \(final.error)")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What the deployment-service is backing up now (or did last).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "A backup id (default: the running or last backup).")
        var id: String?
        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let client = try await ServiceConnection.connect("deployment-service", home: homeOptions.resolved)
            defer { Task { await client.close() } }
            var request = Automate_Deployment_V1_StackBackupRequest()
            request.backupID = id ?? ""
            let s: StackBackup
            do { s = try await client.call(DeploymentService.backupStatus, request) } catch {
                throw ServiceConnection.describe(error)
            }
            if json { print(try s.jsonString()); return }
            print("backup \(s.backupID)  \(BackupProgressView.line(Self.summary(s), width: 0, bar: false).trimmingCharacters(in: .whitespaces))")
            let width = max(18, s.services.map(\.service.count).max() ?? 0)
            for service in s.services { print("  " + BackupProgressView.line(service, width: width, bar: false)) }
            if !s.error.isEmpty { print("error: \(s.error)") }
            let archiver = await WALArchiverStatus.fetch(home: homeOptions.resolved)
            print(archiver.status.map { WALArchiverStatus.line($0, now: Date()).text } ?? "WAL archive: unknown (\(archiver.reason))")
        }

        static func summary(_ s: StackBackup) -> ServiceBackupStatus {
            var x = ServiceBackupStatus()
            x.state = s.state
            x.progress.bytesDone = s.bytesWritten
            x.progress.phase = "running"
            return x
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel the running backup: every service stops, the backup is marked failed.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The backup id (default: the running one).")
        var id: String?

        func run() async throws {
            let client = try await ServiceConnection.connect("deployment-service", home: homeOptions.resolved)
            defer { Task { await client.close() } }
            var request = Automate_Deployment_V1_StackBackupRequest()
            request.backupID = id ?? ""
            do {
                let s = try await client.call(DeploymentService.cancelBackup, request)
                print("Cancelled backup \(s.backupID): marked failed.")
            } catch {
                throw ServiceConnection.describe(error)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete backups by id, or by retention (--keep N newest completed, --older-than 30d).",
            discussion: "Asks before deleting unless --yes is given; without a terminal, --yes is required.")
        @OptionGroup var options: RepositoryOptions
        @Argument(help: "Backup ids.")
        var ids: [String] = []
        @Option(help: "Delete backups older than this (e.g. 12h, 30d, 2w).")
        var olderThan: String?
        @Option(help: "Keep the N newest completed backups; delete every older backup.")
        var keep: Int?
        @Flag(help: "Do not ask.")
        var yes = false
        @Flag(help: "Print what would be deleted, delete nothing.")
        var dryRun = false

        func run() async throws {
            guard !ids.isEmpty || olderThan != nil || keep != nil else {
                throw CLIError("name backup ids, or give --keep N or --older-than DURATION", exitCode: 2)
            }
            var targets = Set<String>()
            for id in ids {
                guard BackupID(id) != nil else { throw CLIError("\"\(id)\" is not a backup id (yyyyMMddHHmmss)", exitCode: 2) }
                targets.insert(id)
            }
            if olderThan != nil || keep != nil {
                let entries: [(id: BackupID, completed: Bool)]
                if let listed = try? options.resolved().list() {
                    entries = listed.map { ($0.id, $0.state == .completed) }
                } else {
                    entries = try await Self.fromService(options.homeOptions.resolved)
                }
                if let olderThan {
                    guard let age = Self.parseAge(olderThan) else {
                        throw CLIError("--older-than \"\(olderThan)\" is not a duration like 90m, 12h, 30d or 2w", exitCode: 2)
                    }
                    let cutoff = Date().addingTimeInterval(-age)
                    for e in entries where e.id.date < cutoff { targets.insert(e.id.rawValue) }
                }
                if let keep {
                    guard keep >= 0 else { throw CLIError("--keep must be 0 or more", exitCode: 2) }
                    let completed = entries.filter(\.completed).map(\.id).sorted(by: >)
                    if completed.count > keep {
                        let oldestKept = keep > 0 ? completed[keep - 1] : nil
                        for e in entries where oldestKept.map({ e.id < $0 }) ?? true { targets.insert(e.id.rawValue) }
                    }
                }
            }
            let sorted = targets.sorted()
            guard !sorted.isEmpty else { print("Nothing to delete."); return }
            if dryRun {
                for id in sorted { print("would delete \(id)") }
                return
            }
            if !yes {
                guard isatty(STDIN_FILENO) == 1 else {
                    throw CLIError("refusing to delete \(sorted.count) backups without --yes (no terminal to ask on)", exitCode: 2)
                }
                print("Delete \(sorted.count) backups (\(sorted.joined(separator: ", ")))? [y/N] ", terminator: "")
                StandardOutput.flush()
                guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                    print("Nothing deleted.")
                    return
                }
            }
            let client = try await ServiceConnection.connect("deployment-service", home: options.homeOptions.resolved)
            defer { Task { await client.close() } }
            var request = Automate_Deployment_V1_DeleteStackBackupsRequest()
            request.backupIds = sorted
            do {
                let r = try await client.call(DeploymentService.deleteBackups, request)
                for id in r.deleted { print("Deleted backup \(id)") }
            } catch {
                throw ServiceConnection.describe(error)
            }
        }

        /// `90m`, `12h`, `30d`, `2w` (and the manifest units ms, s) in seconds.
        static func parseAge(_ text: String) -> TimeInterval? {
            if let n = Double(text.dropLast()), n >= 0 {
                if text.hasSuffix("d") { return n * 86400 }
                if text.hasSuffix("w") { return n * 7 * 86400 }
            }
            return ManifestDuration.parse(text).map(\.seconds)
        }

        static func fromService(_ home: AutomateHome) async throws -> [(id: BackupID, completed: Bool)] {
            let client = try await ServiceConnection.connect("deployment-service", home: home)
            defer { Task { await client.close() } }
            let r = try await client.call(DeploymentService.listBackups, Automate_Deployment_V1_ListStackBackupsRequest())
            return r.backups.compactMap { b in BackupID(b.backupID).map { ($0, b.state == .completed) } }
        }
    }
}
