import ArgumentParser
import AutomateSupervisor
import BackupRepository
import Foundation

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up the stack (create, status, cancel, delete) and inspect repositories (list, show, verify: no running stack needed).",
        subcommands: [Create.self, Status.self, Cancel.self, List.self, Show.self, Verify.self, Delete.self,
                      PruneCommand.self, RepositoryCommand.self, KeyCommand.self])

    /// `--repository`, defaulting to the stack's own: the one its gateway is configured with.
    struct RepositoryOptions: ParsableArguments {
        @OptionGroup var homeOptions: HomeOptions
        @Option(help: "The backup repository: a folder or s3://bucket/prefix (default: the one the stack's gateway is configured with).")
        var repository: String?
        @OptionGroup var s3: S3RepositoryOptions

        func resolved(_ positional: String? = nil) throws -> BackupRepository {
            if let text = positional ?? repository { return try s3.open(text) }
            return try StackRepository.of(home: homeOptions.resolved).open()
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the backups in a repository: id, state, size, age.")
        @OptionGroup var options: RepositoryOptions
        @Argument(help: "The repository: a folder or s3://bucket/prefix (default: --repository, else the gateway's).")
        var path: String?
        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let repository = try options.resolved(path)
            let entries: [BackupRepository.Entry]
            do { entries = try repository.list() } catch { throw CLIError("\(error)") }
            try Self.render(entries, repository: repository, json: json)
        }

        static func render(_ entries: [BackupRepository.Entry], repository: BackupRepository, json: Bool) throws {
            if json {
                let rows: [[String: Any]] = entries.map {
                    ["id": $0.id.rawValue, "state": $0.state.rawValue, "restorable": $0.state.isRestorable,
                     "size": $0.size, "services": $0.services, "fingerprint": $0.fingerprint ?? NSNull(), "error": $0.error ?? NSNull()]
                }
                let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            if entries.isEmpty {
                print("No backups in \(repository.path).")
                return
            }
            print(BackupTable.render(entries, now: Date()), terminator: "")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one backup: services, artifacts, sizes, fingerprint.")
        @OptionGroup var options: RepositoryOptions
        @Argument(help: "The backup id (yyyyMMddHHmmss).")
        var id: String

        func run() async throws {
            let repository = try options.resolved()
            guard let backupID = BackupID(id) else { throw CLIError("\"\(id)\" is not a backup id (yyyyMMddHHmmss)") }
            let entry: BackupRepository.Entry
            do { entry = try repository.entry(backupID) } catch { throw CLIError("\(error)") }
            print("backup       \(entry.id)  (\(BackupTable.utc(entry.id.date)))")
            print("state        \(entry.state.rawValue)\(entry.state.isRestorable ? "" : "  (not restorable)")")
            if let error = entry.error { print("error        \(error)") }
            print("size         \(BackupTable.bytes(entry.size))")
            print("fingerprint  \(entry.fingerprint ?? "-")")
            print("services     \(entry.services.joined(separator: ", "))")
            // Chunked: with the passphrase, each artifact's chunks are checked to be present.
            let opened = try? ChunkedRepositoryAccess(repository).openIfChunked(passphraseFile: nil, home: options.homeOptions.resolved)
            let report = try BackupVerifier(repository: repository, chunks: opened.map { ChunkCheck(repository: $0.repository) })
                .verify(backupID, checkArtifacts: false)
            for finding in report.findings {
                print("  \(finding.file)  \(finding.detail)")
            }
            for problem in report.problems { print("  ! \(problem)") }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read every artifact and check sizes and sha256 (all backups when no id is given).",
            discussion: """
                Prints one row per file (ok, corrupted, missing, unverified); exits 1 on any fault. In a chunked \
                repository every chunk an artifact needs is checked to be indexed and present, and every chunk of \
                the packs read is authenticated (all packs, or a random --read-data-subset of them).
                """)
        @OptionGroup var options: RepositoryOptions
        @Argument(help: "Backup ids (default: every backup in the repository).")
        var ids: [String] = []
        @Option(help: "A chunked repository: the packs to read, as a percentage (e.g. 10%); the others are only checked to exist.")
        var readDataSubset: String?
        @Option(help: "A file whose first line is the chunked repository's passphrase (default: $AUTOMATE_BACKUP_PASSPHRASE, else the home's).")
        var passphraseFile: String?

        func run() async throws {
            let repository = try options.resolved()
            var subset = 1.0
            if let text = readDataSubset {
                let number = text.hasSuffix("%") ? String(text.dropLast()) : text
                guard let value = Double(number), value > 0, value <= 100 else {
                    throw CLIError("--read-data-subset \(text): give a percentage above 0 and at most 100, such as 10%", exitCode: 2)
                }
                subset = value / 100
            }
            let chunks = try ChunkedRepositoryAccess(repository).openIfChunked(passphraseFile: passphraseFile, home: options.homeOptions.resolved)
                .map { ChunkCheck(repository: $0.repository, readDataSubset: subset) }
            var targets: [BackupID] = []
            for id in ids {
                guard let parsed = BackupID(id) else { throw CLIError("\"\(id)\" is not a backup id (yyyyMMddHHmmss)") }
                targets.append(parsed)
            }
            if targets.isEmpty {
                do { targets = try repository.list().map(\.id) } catch { throw CLIError("\(error)") }
            }
            var faults = 0
            for id in targets {
                let report: BackupVerifier.Report
                do { report = try BackupVerifier(repository: repository, chunks: chunks).verify(id) } catch { throw CLIError("\(error)") }
                let width = max(4, report.findings.map(\.file.count).max() ?? 0)
                print("\(id)  \(report.state.rawValue)")
                for finding in report.findings {
                    print("  \(finding.verdict.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0))\(finding.file.padding(toLength: width, withPad: " ", startingAt: 0))  \(finding.detail)")
                }
                for problem in report.problems { print("  fault     \(problem)") }
                if !report.isSound { faults += 1 }
            }
            // The WAL archive (point-in-time recovery), when the whole repository is verified.
            var walFaults = 0, walChecked = false
            let wal = WALArchiveVerifier(repository: repository, chunks: chunks)
            if ids.isEmpty, try CLIError.reporting({ try wal.exists() }) {
                // From each kept base backup's first segment on: the chain a recovery from it replays.
                let starts = try CLIError.reporting { try wal.baseBackupStarts(targets) }
                let report = try CLIError.reporting { try wal.verify(starts: starts.flatMap { [$0.start, $0.stop] }, contents: true) }
                print("WAL archive  \(report.files) files, \(report.bytes >> 20) MiB")
                for r in report.ranges { print("  cluster \(r.cluster) timeline \(r.oldest.timeline): \(r.oldest.name) to \(r.newest.name)") }
                for gap in report.gaps { print("  fault     \(gap.segment.name) (cluster \(gap.cluster)) is missing: no recovery can replay past it") }
                for problem in report.problems { print("  fault     \(problem)") }
                walFaults = report.gaps.count + report.problems.count
                walChecked = true
            }
            if faults > 0 || walFaults > 0 {
                throw CLIError(
                    faults > 0 ? "\(faults) of \(targets.count) backups have faults" + (walFaults > 0 ? "; the WAL archive has \(walFaults)" : "")
                        : "the WAL archive has \(walFaults) faults", exitCode: 1)
            }
            print("\(targets.count) backups verified, no faults." + (walChecked ? " The WAL archive has no faults." : ""))
        }
    }
}

/// Tables and units for backups.
enum BackupTable {
    static func render(_ entries: [BackupRepository.Entry], now: Date) -> String {
        var rows = [["ID", "STATE", "SIZE", "AGE", "SERVICES"]]
        var reasons: [String?] = [nil]
        for entry in entries {
            rows.append([
                entry.id.rawValue, entry.state.rawValue + (entry.state.isRestorable ? "" : " (not restorable)"),
                bytes(entry.size), StatusRendering.formatDuration(now.timeIntervalSince(entry.id.date)),
                entry.services.joined(separator: ","),
            ])
            reasons.append(entry.state == .completed ? nil : entry.error)
        }
        var widths = [Int](repeating: 0, count: 5)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        // A failed backup's reason goes on a line of its own, under its state.
        let indent = String(repeating: " ", count: widths[0] + 2)
        return zip(rows, reasons).map { row, reason in
            row.enumerated().map { i, cell in i < 4 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) : cell }
                .joined(separator: "  ") + "\n" + (reason.map { "\(indent)\($0)\n" } ?? "")
        }.joined()
    }

    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", amount, units[unit])
    }

    static func utc(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d UTC", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}
