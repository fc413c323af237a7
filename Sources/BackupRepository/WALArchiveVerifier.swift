import ChunkStore
import Crypto
import Foundation

/// Checks a repository's WAL archive (``WALArchive``) for `automate backup verify`: every record parses
/// and names its file; every plain file's object is there with its SHA-256; every chunked file's chunks
/// are indexed, present and (with `contents`) authenticated; and the chain of segments of each cluster's
/// timelines has no gap from each start (a kept base backup's first segment, else the oldest archived
/// one) to the newest segment archived.
public struct WALArchiveVerifier {
    /// What was found.
    public struct Report: Sendable {
        /// A segment of one cluster's archive.
        public struct Position: Sendable, Hashable, Comparable {
            public var cluster: String
            public var segment: WALSegment
            public init(cluster: String, segment: WALSegment) {
                self.cluster = cluster
                self.segment = segment
            }
            public static func < (a: Position, b: Position) -> Bool { (a.cluster, a.segment) < (b.cluster, b.segment) }
        }

        /// Files with a record.
        public var files = 0
        /// Their bytes.
        public var bytes: Int64 = 0
        /// The oldest and newest segment per cluster and timeline.
        public var ranges: [(cluster: String, oldest: WALSegment, newest: WALSegment)] = []
        /// Segments missing from the chain (each a gap a recovery cannot cross).
        public var gaps: [Position] = []
        /// Damaged or missing files, unreadable records: one line each, naming the file.
        public var problems: [String] = []
        /// Whether nothing is wrong.
        public var isSound: Bool { gaps.isEmpty && problems.isEmpty }
    }

    public let repository: BackupRepository
    /// The chunk store's check (chunked repositories; nil for plain).
    public let chunks: ChunkCheck?

    public init(repository: BackupRepository, chunks: ChunkCheck?) {
        self.repository = repository
        self.chunks = chunks
    }

    /// Whether the repository holds a WAL archive at all.
    public func exists() throws -> Bool {
        try repository.store.topLevelNames().contains(WALArchive.folder)
    }

    /// The first and last WAL segment each of `backups`' base backups needs (their
    /// `*/pg_base/metadata.json`: `cluster`, `start_wal`, `stop_wal`), with the backup; backups without a
    /// base backup are left out.
    public func baseBackupStarts(_ backups: [BackupID]) throws -> [(backup: BackupID, start: Report.Position, stop: Report.Position)] {
        try PointInTimePlanner(repository: repository).baseBackups(of: backups).map { base in
            (base.backup, Report.Position(cluster: base.cluster, segment: base.start), Report.Position(cluster: base.cluster, segment: base.stop))
        }
    }

    /// Every record of the archive, by cluster and file name; a record that does not parse is a problem.
    public func records(problems: inout [String]) throws -> [String: [String: WALFileRecord]] {
        var out: [String: [String: WALFileRecord]] = [:]
        for file in try repository.store.files(under: WALArchive.folder + "/") {
            guard let (cluster, name) = WALArchive.parse(recordKey: file.path) else { continue }
            guard let data = try repository.store.read(file.path) else {
                problems.append("\(file.path): vanished while being read")
                continue
            }
            do {
                let record = try WALFileRecord.decode(Array(data), key: file.path)
                guard record.name == name else {
                    problems.append("\(file.path): the record is of \(record.name), not \(name)")
                    continue
                }
                out[cluster, default: [:]][name] = record
            } catch {
                problems.append("\(error)")
            }
        }
        return out
    }

    /// Checks the archive. `starts` are the first segments the kept base backups need (none for a cluster:
    /// the oldest archived segment of each of its timelines). `contents`: read every plain object (its SHA-256) and
    /// authenticate every chunk; without it only presence is checked.
    public func verify(starts: [Report.Position] = [], contents: Bool = true) throws -> Report {
        var report = Report()
        let records = try records(problems: &report.problems)
        let all = records.flatMap { cluster, files in files.map { (cluster: cluster, name: $0.key, record: $0.value) } }
            .sorted { ($0.cluster, $0.name) < ($1.cluster, $1.name) }
        report.files = all.count
        report.bytes = all.reduce(0) { $0 + $1.record.size }
        var chunked: [(String, ChunkStore.ArtifactRecord)] = []
        for (_, name, record) in all {
            if let c = record.chunks {
                chunked.append((name, c))
            } else if let object = record.object {
                guard let data = try repository.store.read(object) else {
                    report.problems.append("\(name): its object \(object) is missing")
                    continue
                }
                if contents, let expected = record.objectSHA256 {
                    let actual = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
                    if actual != expected { report.problems.append("\(name): \(object) has sha256 \(actual), its record says \(expected) (damaged)") }
                }
            } else {
                report.problems.append("\(name): its record names neither an object nor chunks")
            }
        }
        if !chunked.isEmpty {
            guard let chunks else {
                report.problems.append("\(chunked.count) WAL files are in the chunk store; give the repository's passphrase to check them")
                return finish(report, records: records, starts: starts)
            }
            let found = try chunks.problems(chunked.map(\.1), contents: contents)
            for (i, lines) in found.sorted(by: { $0.key < $1.key }) {
                for line in lines { report.problems.append("\(chunked[i].0): \(line)") }
            }
        }
        return finish(report, records: records, starts: starts)
    }

    private func finish(_ report: Report, records: [String: [String: WALFileRecord]], starts: [Report.Position]) -> Report {
        var report = report
        for cluster in Set(records.keys).union(starts.map(\.cluster)).sorted() {
            let segments = Set((records[cluster] ?? [:]).keys.compactMap { WALSegment(name: $0) })
            var byTimeline: [UInt32: [WALSegment]] = [:]
            for s in segments { byTimeline[s.timeline, default: []].append(s) }
            let ranges = byTimeline.keys.sorted().map { tl in (cluster: cluster, oldest: byTimeline[tl]!.min()!, newest: byTimeline[tl]!.max()!) }
            report.ranges += ranges
            let own = starts.filter { $0.cluster == cluster }.map(\.segment)
            report.gaps += WALArchive.gaps(from: own.isEmpty ? ranges.map(\.oldest) : own, archived: segments).map { Report.Position(cluster: cluster, segment: $0) }
        }
        return report
    }
}
