import ArtifactStorage
import BackupRepository
import Foundation
import Operations
import S3Client
import ServiceKit

/// The deployment-service's own part of a backup, `<backup-id>/deployment-service/`: its store copied
/// with SQLite's online backup API (`state.sqlite`; chunks in a chunked repository), every deployed
/// manifest (`manifests/<name>.toml`), and `metadata.json` listing those files and the services present.
struct SelfBackup: Sendable {
    let config: DeploymentConfig
    let store: DeploymentStore
    let stack: StackServices

    func run(backupID: String) async throws -> ServiceMetadata {
        let started = Date()
        let prefix = "\(backupID)/deployment-service/"
        let s3 = config.kit.s3, bucket = config.kit.bucket, store = self.store
        var artifacts: [ArtifactRecord] = []
        let copy = NSTemporaryDirectory() + "automate-deployment-state-\(backupID)-\(UUID().uuidString).sqlite"
        defer { unlink(copy) }
        let state: [UInt8] = try await runBlocking(observingCancellation: false) { _ in
            try store.copy(to: copy)
            return Array(try Data(contentsOf: URL(fileURLWithPath: copy)))
        }
        let repository = config.kit.artifacts
        // Held until metadata.json names the store's chunks (a prune waits for it).
        let session = try await runBlocking("deployment.self-backup") { _ in
            try repository.writeSession(purpose: "backup \(backupID) of the deployment-service's store")
        }
        defer { session.close() }
        let stored = try await runBlocking("deployment.self-backup") { _ -> StoredArtifact in
            let sink = try session.sink(key: prefix + "state.sqlite", compressionLevel: nil)
            do { try state.withUnsafeBytes { try sink.write($0) } } catch {
                sink.abort()
                throw error
            }
            let stored = try sink.finish()
            try session.commit()
            return stored
        }
        artifacts.append(ArtifactRecord(path: "state.sqlite", size: stored.size, sha256: stored.sha256, format: "sqlite", chunks: stored.chunks))
        for service in stack.services {
            let bytes = Array(service.text.utf8)
            let path = "manifests/\(service.manifest.name).toml"
            try await s3.putObject(bucket: bucket, key: prefix + path, bytes: bytes, contentType: "application/toml")
            artifacts.append(ArtifactRecord(path: path, size: UInt64(bytes.count), sha256: Checksum.sha256(bytes), format: "manifest"))
        }
        let metadata = ServiceMetadata(
            service: "deployment-service", backupID: backupID, startedAt: ISO8601DateFormatter().string(from: started),
            finishedAt: ISO8601DateFormatter().string(from: Date()), versions: ["store": "sqlite"],
            artifacts: artifacts.sorted { $0.path < $1.path }, deployment: stack.services.map(\.record))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try await s3.putObject(bucket: bucket, key: prefix + "metadata.json", bytes: Array(try encoder.encode(metadata)), contentType: "application/json")
        return metadata
    }
}
