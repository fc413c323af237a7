import BackupRepository
import Foundation
import Testing

/// Choosing a base backup and checking the WAL chain for a point-in-time recovery, on repositories
/// written by hand: two base backups of one cluster and the segments archived after them.
struct PointInTimePlannerTests {
    static let cluster = "7714934504545468429"
    static let first = BackupID("20261201100000")!
    static let second = BackupID("20261201120000")!

    /// Base backups: the first covers segments 3-3 and ends at 10:00:05, the second 8-8 and ends at
    /// 12:00:05. Segments 3...`last` are written one minute apart, 3-7 from 10:00:10, 8 on from
    /// 12:00:10, and archived an hour later (the written time decides); `missing` left out.
    static func repository(last: UInt64 = 12, missing: Set<UInt64> = []) throws -> BackupRepository {
        let root = FileManager.default.temporaryDirectory.path + "/automate-pitr-\(UUID().uuidString)"
        func write(_ path: String, _ object: [String: Any]) throws {
            let full = root + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: full))
        }
        for (id, segment, stopLSN, finished) in [(first, 3, "0/3000100", "2026-12-01T10:00:05.000Z"), (second, 8, "0/8000100", "2026-12-01T12:00:05.000Z")] {
            let name = WALSegment(timeline: 1, number: UInt64(segment)).name
            try write("\(id)/automate-postgresql/pg_base/metadata.json", [
                "cluster": cluster, "timeline": 1, "start_wal": name, "stop_wal": name, "start_lsn": "0/\(segment)000028",
                "stop_lsn": stopLSN, "finished_at": finished,
            ])
        }
        let morning = PointInTimePlannerTests.date("2026-12-01 10:00:10Z"), noon = PointInTimePlannerTests.date("2026-12-01 12:00:10Z")
        for number in UInt64(3)...last where !missing.contains(number) {
            let segment = WALSegment(timeline: 1, number: number)
            let at = number < 8 ? morning.addingTimeInterval(Double(number - 3) * 60) : noon.addingTimeInterval(Double(number - 8) * 60)
            let record = WALFileRecord(name: segment.name, size: 16 << 20, sha256: String(repeating: "0", count: 64),
                                       archivedAt: ISO8601DateFormatter().string(from: at.addingTimeInterval(3600)), writtenAt: ISO8601DateFormatter().string(from: at), object: nil, objectSHA256: nil, chunks: nil)
            let path = root + "/" + WALArchive.recordKey(segment.name, cluster: cluster)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(try record.encoded()).write(to: URL(fileURLWithPath: path))
        }
        return BackupRepository(path: root)
    }

    static func date(_ text: String) -> Date {
        guard case .time(let date) = try! RecoveryTarget.time(parsing: text) else { fatalError() }
        return date
    }

    @Test func timesParseToTheMicrosecondInAnyZone() throws {
        let utc = Self.date("2026-12-01 16:58:00.123456Z")
        #expect(RecoveryTarget.postgresTime(utc) == "2026-12-01 16:58:00.123456+00")
        #expect(Self.date("2026-12-01T17:58:00.123456+01:00") == utc)
        #expect(Self.date("2026-12-01 11:58:00.123456-0500") == utc)
        #expect(RecoveryTarget.postgresTime(Self.date("2026-12-01 16:58:00")) == "2026-12-01 16:58:00.000000+00")
        for bad in ["yesterday", "2026-13-01 00:00:00Z", "2026-12-01", "2026-12-01 16:58Z"] {
            #expect(throws: BackupRepository.Failure.self) { try RecoveryTarget.time(parsing: bad) }
        }
        #expect(try RecoveryTarget.lsn(parsing: "16/B374D848") == .lsn(0x16_B374_D848))
        #expect(throws: BackupRepository.Failure.self) { try RecoveryTarget.lsn(parsing: "16-B374D848") }
    }

    @Test func theNewestBaseBackupBeforeTheTargetAndTheSegmentThatCoversIt() throws {
        let planner = PointInTimePlanner(repository: try Self.repository())
        let backups = [Self.first, Self.second]
        // 10:02:30 is after the first base backup only; segment 6 is the first written after it (10:03:10).
        let early = try planner.plan(.time(Self.date("2026-12-01 10:02:30Z")), backups: backups)
        #expect(early.base.backup == Self.first && early.lastNeeded == WALSegment(timeline: 1, number: 6))
        let late = try planner.plan(.time(Self.date("2026-12-01 12:00:06Z")), backups: backups)
        #expect(late.base.backup == Self.second && late.lastNeeded == WALSegment(timeline: 1, number: 8))
        #expect(late.newestArchived == WALSegment(timeline: 1, number: 12))
        let lsn = try planner.plan(.lsn(0x0_0900_0000), backups: backups)
        #expect(lsn.base.backup == Self.second && lsn.lastNeeded == WALSegment(timeline: 1, number: 9))
        let end = try planner.plan(.backupEnd, backups: backups)
        #expect(end.base.backup == Self.second && end.lastNeeded == WALSegment(timeline: 1, number: 8))
        let chosen = try planner.plan(.backupEnd, backups: backups, chosen: Self.first)
        #expect(chosen.base.backup == Self.first && chosen.lastNeeded == WALSegment(timeline: 1, number: 3))
    }

    @Test func unreachableTargetsAreRefusedSayingWhy() throws {
        let planner = PointInTimePlanner(repository: try Self.repository(last: 9, missing: [5]))
        let backups = [Self.first, Self.second]
        func message(_ target: RecoveryTarget, chosen: BackupID? = nil) -> String {
            do {
                _ = try planner.plan(target, backups: backups, chosen: chosen)
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(message(.time(Self.date("2026-12-01 09:00:00Z"))).contains("before the end of the oldest base backup (backup \(Self.first)"))
        #expect(message(.time(Self.date("2026-12-01 13:00:00Z"))).contains("past the end of the archived WAL: its newest segment, 000000010000000000000009"))
        // From the first base backup the chain breaks at 5; from the second it does not pass there.
        #expect(message(.time(Self.date("2026-12-01 10:05:00Z"))).contains("WAL segment 000000010000000000000005 is missing"))
        #expect(message(.lsn(0x0_0900_0000)) == "no error")
        #expect(message(.lsn(0x0_0200_0000)).contains("before the end of the oldest base backup"))
        #expect(message(.backupEnd, chosen: BackupID("20261201110000")!).contains("has no base backup"))
        #expect(message(.time(Self.date("2026-12-01 10:00:00Z")), chosen: Self.first).contains("before the end of backup \(Self.first)'s base backup"))
        #expect(message(.backupEnd, chosen: Self.first) == "no error")
    }
}
