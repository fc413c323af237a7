import Foundation
import Logging
import S3Client

/// Writes the backup's own records (`.status`, `checksums.json`, `backup-result.json`) through the
/// gateway, retrying for up to a minute while it is unreachable (the supervisor restarts a gateway that
/// died), so that a backup whose gateway was killed still ends marked `failed`.
struct RepositoryWriter: Sendable {
    let s3: S3Client
    let bucket: String
    let logger: Logger
    var patience: Duration = .seconds(60)

    func put(_ key: String, _ bytes: [UInt8]) async throws {
        let deadline = ContinuousClock.now + patience
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await s3.putObject(bucket: bucket, key: key, bytes: bytes,
                                       contentType: key.hasSuffix(".json") ? "application/json" : "text/plain")
                return
            } catch let e as S3Error where e.status >= 400 && e.status < 500 {
                throw e  // refused (credentials, bucket): retrying will not help
            } catch {
                guard ContinuousClock.now + delay < deadline else { throw error }
                logger.warning("writing \(key) failed (\(error)); retrying in \(delay)")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }
}
