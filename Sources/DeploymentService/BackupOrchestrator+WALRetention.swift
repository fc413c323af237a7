import BackupContract
import BackupRepository
import Foundation
import Operations

/// Retention of the WAL archive by the base backups kept: once backups are deleted, archived WAL files
/// older than the oldest kept completed base backup's first segment of their cluster go too. A running
/// backup's base backup always starts after every kept one, so nothing it needs can be deleted; a cluster
/// with no kept base backup keeps its whole archive (nothing says what it is still needed for), and
/// timeline history files stay.
extension BackupOrchestrator {
    /// Deletes the archived WAL no kept base backup needs (records before their data, so a crash leaves
    /// at worst an unreferenced object, deleted by the next pass); returns the objects deleted.
    func pruneWALArchive() async throws -> Int {
        let s3 = config.kit.s3, bucket = config.kit.bucket
        let (deleted, kept) = try await runBlocking(observingCancellation: false) { _ -> (Int, [String: WALSegment]) in
            let objects = try s3.listObjectsSync(bucket: bucket, prefix: "")
            let keys = Set(objects.map(\.key))
            var oldest: [String: WALSegment] = [:]
            for object in objects where object.key.hasSuffix("/pg_base/metadata.json") {
                let parts = object.key.split(separator: "/")
                guard parts.count == 4, BackupID(String(parts[0])) != nil, keys.contains("\(parts[0])/checksums.json"),
                      let status = try? s3.getObjectSync(bucket: bucket, key: "\(parts[0])/.status"),
                      String(decoding: status, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "completed" else { continue }
                // A base backup whose start is unknown throws: the whole archive is kept rather than guessed at.
                let base = try PointInTimePlanner.BaseBackup(parsing: Data(try s3.getObjectSync(bucket: bucket, key: object.key)), key: object.key)
                let (cluster, start) = (base.cluster, base.start)
                if let current = oldest[cluster], current.number <= start.number { continue }
                oldest[cluster] = start
            }
            var deleted = 0
            for object in objects where object.key.hasPrefix(WALArchive.folder + "/") {
                let parts = object.key.split(separator: "/")
                guard parts.count == 4, let first = oldest[String(parts[1])],
                      let segment = WALSegment(name: String(parts[3].prefix(24))), segment.number < first.number else { continue }
                try s3.deleteObjectSync(bucket: bucket, key: object.key)
                deleted += 1
            }
            return (deleted, oldest)
        }
        if deleted > 0 {
            let firsts = kept.sorted { $0.key < $1.key }.map { "cluster \($0.key) from \($0.value)" }.joined(separator: ", ")
            logger.info("WAL archive: deleted \(deleted) objects no kept base backup needs (kept: \(firsts))")
        }
        return deleted
    }
}
