import ChunkStore
import Foundation

/// Every chunk a repository's backups name: what `automate backup prune` must keep. Read from every
/// record that can list chunks — each backup's `metadata.json` files (a service's, and the pg-sidecar's
/// `pg_data/metadata.json`), each search export's `manifest.json` and each archived WAL file's record —
/// in every backup folder whatever
/// its state (a failed or running backup's chunks go only once its folder is deleted).
public enum ChunkReferences {
    /// The blob ids named, and how many records were read. A record that cannot be read or parsed stops
    /// it (prune must never run on a partial list).
    public static func collect(_ repository: BackupRepository) throws -> (blobs: Set<BlobID>, records: Int) {
        let store = repository.store
        var files: [String] = []
        for name in try store.topLevelNames() {
            if BackupID(name) != nil {
                files += try store.files(under: name + "/").map(\.path).filter { $0.hasSuffix("/metadata.json") }
            } else if name == "automate-elasticsearch-data" {
                files += try store.files(under: name + "/").map(\.path).filter { $0.hasSuffix("/manifest.json") }
            } else if name == WALArchive.folder {
                files += try store.files(under: name + "/").map(\.path).filter { WALArchive.parse(recordKey: $0) != nil }
            }
        }
        var blobs = Set<BlobID>()
        for file in files {
            guard let data = try store.read(file) else {
                throw BackupRepository.Failure(kind: .unreadable, message: "\(repository.path)/\(file) vanished while its chunks were being listed; run prune again")
            }
            let object: Any
            do { object = try JSONSerialization.jsonObject(with: data) } catch {
                throw BackupRepository.Failure(
                    kind: .invalid, message: "\(repository.path)/\(file) does not parse (\(error)): its chunks cannot be listed, so nothing can be pruned; repair or delete that backup first")
            }
            try walk(object, file: file, into: &blobs)
        }
        return (blobs, files.count)
    }

    /// Adds the blob ids of every `"chunks": {"blobs": [{"id": ...}]}` below `object`.
    private static func walk(_ object: Any, file: String, into blobs: inout Set<BlobID>) throws {
        if let dictionary = object as? [String: Any] {
            for (key, value) in dictionary {
                if key == "chunks", let record = value as? [String: Any], let list = record["blobs"] as? [[String: Any]] {
                    for blob in list {
                        guard let hex = blob["id"] as? String, let id = BlobID(hex: hex) else {
                            throw BackupRepository.Failure(kind: .invalid, message: "\(file) names a chunk that is not a 64-digit id: \(blob); repair or delete that backup first")
                        }
                        blobs.insert(id)
                    }
                } else {
                    try walk(value, file: file, into: &blobs)
                }
            }
        } else if let array = object as? [Any] {
            for value in array { try walk(value, file: file, into: &blobs) }
        }
    }
}
