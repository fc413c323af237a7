import Foundation

/// Chooses the base backup a point-in-time recovery starts from and checks, before anything is touched,
/// that the WAL archive can carry it to the target: the newest completed backup whose base backup ended
/// before the target, and every WAL segment from its start on, with no gap, up to the target (a time
/// target: up to a segment PostgreSQL finished writing at or after it: the records of that moment are in
/// it or before it).
public struct PointInTimePlanner {
    /// One base backup, as its `pg_base/metadata.json` records it.
    public struct BaseBackup: Sendable, Equatable {
        public var backup: BackupID
        public var service: String
        public var cluster: String
        public var timeline: UInt32
        public var start: WALSegment
        public var stop: WALSegment
        public var stopLSN: UInt64
        /// When it ended: from then on it is consistent.
        public var finishedAt: Date

        /// A base backup's `<id>/<service>/pg_base/metadata.json` (`key`), as the pg-sidecar wrote it;
        /// throws naming `key` when it does not record its cluster, timeline, WAL positions and end.
        public init(parsing data: Data, key: String) throws {
            let parts = key.split(separator: "/")
            guard parts.count >= 4, let backup = BackupID(String(parts[parts.count - 4])),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let cluster = object["cluster"] as? String, WALArchive.isCluster(cluster),
                  let timeline = object["timeline"] as? Int,
                  let start = (object["start_wal"] as? String).flatMap(WALSegment.init(name:)),
                  let stop = (object["stop_wal"] as? String).flatMap(WALSegment.init(name:)),
                  let stopLSN = (object["stop_lsn"] as? String).flatMap(WALSegment.parseLSN),
                  let finished = (object["finished_at"] as? String).flatMap(PointInTimePlanner.date) else {
                throw BackupRepository.Failure(kind: .invalid, message: "\(key) does not record its cluster, timeline, WAL positions and end: the base backup is damaged")
            }
            self.init(backup: backup, service: String(parts[parts.count - 3]), cluster: cluster, timeline: UInt32(timeline), start: start,
                      stop: stop, stopLSN: stopLSN, finishedAt: finished)
        }

        public init(backup: BackupID, service: String, cluster: String, timeline: UInt32, start: WALSegment, stop: WALSegment,
                    stopLSN: UInt64, finishedAt: Date) {
            self.backup = backup; self.service = service; self.cluster = cluster; self.timeline = timeline
            self.start = start; self.stop = stop; self.stopLSN = stopLSN; self.finishedAt = finishedAt
        }
    }

    /// The recovery to run.
    public struct Plan: Sendable, Equatable {
        public var base: BaseBackup
        public var target: RecoveryTarget
        /// The last WAL segment the recovery is known to need (a time target: the first written at or
        /// after it), and the newest archived segment of the base backup's timeline, and when it was
        /// written (archived, for records that do not say).
        public var lastNeeded: WALSegment
        public var newestArchived: WALSegment
        public var newestWrittenAt: Date
    }

    public let repository: BackupRepository

    public init(repository: BackupRepository) {
        self.repository = repository
    }

    /// The base backups of `backups` (completed ones, as the caller lists them), oldest first.
    public func baseBackups(of backups: [BackupID]) throws -> [BaseBackup] {
        var out: [BaseBackup] = []
        for id in backups.sorted() {
            for file in try repository.store.files(under: id.rawValue + "/") where file.path.hasSuffix("/pg_base/metadata.json") {
                guard let data = try repository.store.read(file.path) else { continue }
                out.append(try BaseBackup(parsing: data, key: file.path))
            }
        }
        return out
    }

    /// The plan for `target` among `backups` (completed ones); `chosen`: recover from that backup only
    /// (it must have a base backup). Throws, saying why and what is possible instead, when no base backup
    /// ends before the target, when the archive ends before it, or when a segment on the way is missing.
    public func plan(_ target: RecoveryTarget, backups: [BackupID], chosen: BackupID? = nil) throws -> Plan {
        let all = try baseBackups(of: backups)
        guard !all.isEmpty else {
            throw failure("\(repository.path) has no completed backup with a base backup (backups taken with archive_mode on have one): there is nothing to recover from; nothing was changed")
        }
        let base: BaseBackup
        if let chosen {
            guard let found = all.last(where: { $0.backup == chosen }) else {
                throw failure("backup \(chosen) has no base backup (or is not completed); those that do: \(all.map(\.backup.rawValue).joined(separator: ", ")); nothing was changed")
            }
            base = found
            try check(target, after: base)
        } else {
            let fitting = all.filter { fits(target, $0) }
            guard let newest = fitting.last else {
                let oldest = all[0]
                throw failure("\(target) is before the end of the oldest base backup (backup \(oldest.backup), consistent from \(Self.text(oldest.finishedAt)), \(RecoveryTarget.lsnText(oldest.stopLSN))): no base backup can reach it; nothing was changed")
            }
            base = newest
        }
        // A record that does not parse counts as missing: the walk below names it if the recovery needs it.
        var unreadable: [String] = []
        let records = try WALArchiveVerifier(repository: repository, chunks: nil).records(problems: &unreadable)[base.cluster] ?? [:]
        var archived: [WALSegment: Date] = [:]
        for (name, record) in records {
            guard let segment = WALSegment(name: name), segment.timeline == base.timeline else { continue }
            // When it was written (else archived): every record in it is from before then.
            archived[segment] = record.writtenAt.flatMap(Self.date) ?? Self.date(record.archivedAt) ?? .distantPast
        }
        guard let newest = archived.keys.max() else {
            throw failure("the WAL archive of cluster \(base.cluster) has no segment of timeline \(base.timeline): backup \(base.backup)'s base backup cannot be recovered; nothing was changed")
        }
        let newestAt = archived[newest]!
        // Walk from the base backup's first segment to the last one the target needs.
        var segment = base.start
        while true {
            guard let at = archived[segment] else {
                if segment > newest || archived.keys.allSatisfy({ $0 < segment }) {
                    throw failure("\(target) is past the end of the archived WAL: its newest segment, \(newest), was written at \(Self.text(newestAt)); nothing was changed")
                }
                let before = archived.keys.filter { $0 < segment }.max()
                throw failure("WAL segment \(segment) is missing from the archive of cluster \(base.cluster)\(before.map { " (the one before it was written at \(Self.text(archived[$0]!)))" } ?? ""): a recovery from backup \(base.backup) cannot pass it; recover to a point before it, or from a later base backup; nothing was changed")
            }
            if reached(target, base: base, segment: segment, writtenAt: at) {
                return Plan(base: base, target: target, lastNeeded: segment, newestArchived: newest, newestWrittenAt: newestAt)
            }
            segment = segment.next
        }
    }

    /// Whether the base backup is consistent before the target.
    private func fits(_ target: RecoveryTarget, _ base: BaseBackup) -> Bool {
        switch target {
        case .time(let date): base.finishedAt <= date
        case .lsn(let value): base.stopLSN <= value
        case .backupEnd: true
        }
    }

    private func check(_ target: RecoveryTarget, after base: BaseBackup) throws {
        guard fits(target, base) else {
            throw failure("\(target) is before the end of backup \(base.backup)'s base backup (consistent from \(Self.text(base.finishedAt)), \(RecoveryTarget.lsnText(base.stopLSN))): recovery cannot stop there; nothing was changed")
        }
    }

    /// Whether WAL up to `segment` (written until `writtenAt`) carries the recovery to the target.
    private func reached(_ target: RecoveryTarget, base: BaseBackup, segment: WALSegment, writtenAt: Date) -> Bool {
        switch target {
        case .time(let date): segment >= base.stop && writtenAt >= date
        case .lsn(let value): segment >= base.stop && segment >= WALSegment(timeline: base.timeline, number: value / WALSegment.size)
        case .backupEnd: segment >= base.stop
        }
    }

    private func failure(_ message: String) -> BackupRepository.Failure {
        BackupRepository.Failure(kind: .invalid, message: message)
    }

    /// RFC 3339, with or without fractional seconds.
    static func date(_ text: String) -> Date? {
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }

    /// `2026-12-01 16:58:00.250 UTC`.
    public static func text(_ date: Date) -> String {
        RecoveryTarget.postgresTime(date).prefix(23) + " UTC"
    }
}
