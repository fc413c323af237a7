import ChunkStore
import Foundation

/// Where the stack's PostgreSQL write-ahead log lies in a repository, beside the backup folders:
///
///     automate-postgresql-wal/<cluster>/<timeline>/<file>.zst    the file, zstd-compressed (plain repositories)
///     automate-postgresql-wal/<cluster>/<timeline>/<file>.json   its record (``WALFileRecord``), written last
///
/// `<cluster>` is the database cluster's system identifier (`pg_control_system()`): a cluster made anew
/// (a restore relaunches the stack on a fresh one) names its segments from the start again, and they
/// must not meet the old cluster's.
///
/// In a chunked repository the file's bytes are chunks of the chunk store and the record lists them, so no
/// WAL lies in clear. A file without a record was never archived (the pg-sidecar answers the server's
/// `archive_command` only after the record is stored). See docs/repository-format.md.
public enum WALArchive {
    /// The top-level folder.
    public static let folder = "automate-postgresql-wal"

    /// Whether `name` is a file PostgreSQL archives: a segment (24 hex digits), a timeline history file
    /// (`00000002.history`), a backup history file (`<segment>.<8 hex>.backup`) or a partial segment.
    public static func isArchivable(_ name: String) -> Bool {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        func hex(_ s: String, _ count: Int) -> Bool { s.count == count && s.allSatisfy(\.isHexDigit) && s.uppercased() == s }
        switch parts.count {
        case 1: return hex(parts[0], 24)
        case 2: return (hex(parts[0], 8) && parts[1] == "history") || (hex(parts[0], 24) && parts[1] == "partial")
        case 3: return hex(parts[0], 24) && hex(parts[1], 8) && parts[2] == "backup"
        default: return false
        }
    }

    /// Whether `cluster` is a system identifier (decimal digits).
    public static func isCluster(_ cluster: String) -> Bool { !cluster.isEmpty && cluster.count <= 20 && cluster.allSatisfy(\.isASCII) && cluster.allSatisfy(\.isNumber) }
    /// The folder of a cluster's archive.
    public static func clusterFolder(_ cluster: String) -> String { "\(folder)/\(cluster)/" }
    /// The folder of `name`'s timeline (its first 8 hex digits) in `cluster`'s archive.
    public static func timelineFolder(_ name: String, cluster: String) -> String { clusterFolder(cluster) + "\(name.prefix(8))/" }
    /// The key of `name`'s record.
    public static func recordKey(_ name: String, cluster: String) -> String { timelineFolder(name, cluster: cluster) + name + ".json" }
    /// The key of `name`'s bytes (plain repositories: `.zst` is added; chunked: the artifact's name).
    public static func dataKey(_ name: String, cluster: String) -> String { timelineFolder(name, cluster: cluster) + name }

    /// The cluster and file name a record key holds, or nil when `key` is not a record's.
    public static func parse(recordKey key: String) -> (cluster: String, name: String)? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0] == folder, isCluster(parts[1]), parts[3].hasSuffix(".json") else { return nil }
        let name = String(parts[3].dropLast(".json".count))
        guard isArchivable(name), name.hasPrefix(parts[2]) else { return nil }
        return (parts[1], name)
    }

    /// The segments missing between each start and the newest segment archived on its timeline: the gaps
    /// that make a base backup unrecoverable past them. `archived` is every archived segment.
    public static func gaps(from starts: [WALSegment], archived: Set<WALSegment>) -> [WALSegment] {
        var missing = Set<WALSegment>()
        for start in starts {
            guard let newest = archived.filter({ $0.timeline == start.timeline }).max(), newest >= start else {
                missing.insert(start)
                continue
            }
            var s = start
            while s <= newest {
                if !archived.contains(s) { missing.insert(s) }
                s = s.next
            }
        }
        return missing.sorted()
    }
}

/// One WAL segment: its timeline and number (16 MiB segments, PostgreSQL's default).
public struct WALSegment: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Bytes per segment.
    public static let size: UInt64 = 16 << 20
    /// Segments per 4 GiB "log" (the middle 8 digits of a name).
    static let perLog: UInt64 = 0x1_0000_0000 / size

    public var timeline: UInt32
    public var number: UInt64

    public init(timeline: UInt32, number: UInt64) {
        self.timeline = timeline
        self.number = number
    }

    /// The segment a 24-digit name names; nil for anything else.
    public init?(name: String) {
        guard name.count == 24, name.allSatisfy(\.isHexDigit),
              let tl = UInt32(name.prefix(8), radix: 16),
              let log = UInt64(name.dropFirst(8).prefix(8), radix: 16),
              let seg = UInt64(name.suffix(8), radix: 16), seg < Self.perLog else { return nil }
        self.init(timeline: tl, number: log * Self.perLog + seg)
    }

    /// The segment holding `lsn` (`16/B374D848`) on `timeline`; nil when `lsn` is not one.
    public init?(timeline: UInt32, lsn: String) {
        guard let value = Self.parseLSN(lsn) else { return nil }
        self.init(timeline: timeline, number: value / Self.size)
    }

    /// An LSN's value (`16/B374D848` → 0x16_B374D848); nil when it is not one.
    public static func parseLSN(_ lsn: String) -> UInt64? {
        let parts = lsn.split(separator: "/")
        guard parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16), hi <= UInt32.max, lo <= UInt32.max else { return nil }
        return hi << 32 | lo
    }

    /// Its file name.
    public var name: String {
        String(format: "%08X%08X%08X", timeline, UInt32(number / Self.perLog), UInt32(number % Self.perLog))
    }

    public var description: String { name }

    /// The segment after it on the same timeline.
    public var next: WALSegment { WALSegment(timeline: timeline, number: number + 1) }

    public static func < (a: WALSegment, b: WALSegment) -> Bool { (a.timeline, a.number) < (b.timeline, b.number) }
}

/// What the repository keeps of one archived WAL file: `automate-postgresql-wal/<cluster>/<timeline>/<file>.json`.
public struct WALFileRecord: Codable, Sendable, Equatable {
    /// The file's name (as PostgreSQL names it).
    public var name: String
    /// Its size in bytes.
    public var size: Int64
    /// SHA-256 of its bytes (lowercase hex): checked by every fetch and by `automate backup verify`.
    public var sha256: String
    /// When it was archived (RFC 3339).
    public var archivedAt: String
    /// When PostgreSQL last wrote it (the file's modification time, RFC 3339): every record in it is
    /// from before then, and a recovery to a later time needs a later file. Nil in records from before
    /// it was kept (the archiving time, later still, stands in).
    public var writtenAt: String?
    /// Plain repositories: the key of the zstd-compressed object, relative to the repository.
    public var object: String?
    /// Plain repositories: SHA-256 of that object (checked by `automate backup verify` without
    /// decompressing it).
    public var objectSHA256: String?
    /// Chunked repositories: its chunks.
    public var chunks: ChunkStore.ArtifactRecord?

    enum CodingKeys: String, CodingKey {
        case name, size, sha256, object, chunks
        case archivedAt = "archived_at"
        case writtenAt = "written_at"
        case objectSHA256 = "object_sha256"
    }

    public init(name: String, size: Int64, sha256: String, archivedAt: String, writtenAt: String? = nil, object: String?, objectSHA256: String?,
                chunks: ChunkStore.ArtifactRecord?) {
        self.writtenAt = writtenAt
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.archivedAt = archivedAt
        self.object = object
        self.objectSHA256 = objectSHA256
        self.chunks = chunks
    }

    /// The record as stored (sorted keys).
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return Array(try encoder.encode(self))
    }

    /// A stored record; the error names `key` and what does not parse.
    public static func decode(_ bytes: [UInt8], key: String) throws -> WALFileRecord {
        do { return try JSONDecoder().decode(WALFileRecord.self, from: Data(bytes)) } catch {
            throw BackupRepository.Failure(kind: .invalid, message: "\(key) is not a WAL record (\(error)); the archive is damaged there")
        }
    }
}
