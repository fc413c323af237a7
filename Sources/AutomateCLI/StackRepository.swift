import AutomateManifest
import AutomateSupervisor
import BackupRepository
import Foundation
import S3Client

/// The stack's own backup repository: the one its gateway is configured with, read from the gateway's
/// manifest (`services/backup-gateway.toml`) and the home's overlay (`<home>/config/backup-gateway.toml`).
/// A folder in fs mode (`repository`), `s3://<upstream_bucket>/<upstream_prefix>` in s3 mode (read with
/// the upstream endpoint and the key pair the gateway itself uses). Every command that takes no
/// repository argument reads this one.
struct StackRepository: Equatable {
    enum Setting: Equatable {
        case folder(String)
        case s3(endpoint: String, region: String, bucket: String, prefix: String, credentialsFile: String)
    }

    let setting: Setting
    /// The gateway's service name, nil when the stack has none.
    let gateway: String?

    /// The repository as a user names it.
    var location: String {
        switch setting {
        case .folder(let path): return path
        case .s3(let endpoint, _, let bucket, let prefix, _):
            return S3Store(client: S3Client(endpoint: endpoint, credentials: nil), bucket: bucket, prefix: prefix).location
        }
    }

    /// The setting of `home`'s gateway (`<home>/backups` when the stack has no gateway manifest).
    static func of(home: AutomateHome) throws -> StackRepository {
        let location = try StackLocation.discover()
        let manifests = try location.manifests(home: home, failure: "cannot read the gateway's repository setting: invalid manifests")
        guard let gateway = manifests.services.first(where: { $0.kind == .gateway }) else {
            return StackRepository(setting: .folder(home.backupsDirectory), gateway: nil)
        }
        let resolved: ServiceManifest
        do {
            resolved = try gateway.resolved(
                in: home, binDirectory: location.binDirectory, hooksDirectory: location.hooksDirectory, runUser: geteuid() == 0 ? gateway.runUserName : "")
        } catch {
            throw CLIError("cannot read the gateway's repository setting from \(gateway.sourcePath): \(error)", exitCode: 2)
        }
        let config = resolved.config.mapValues(\.description)
        let marker = BorrowedRepository.markerPath(home: home.path)
        if FileManager.default.fileExists(atPath: marker) {
            FileHandle.standardError.write(Data("""
                note: an interrupted `automate restore` left the gateway on the repository it read (the own overlay is kept in \(marker)); \
                run that restore again, or move \(marker) to \(home.configOverlayPath(service: gateway.name)) and `automate restart \(gateway.name)`

                """.utf8))
        }
        if config["mode"] == "s3" {
            return StackRepository(setting: .s3(
                endpoint: config["upstream_endpoint"] ?? "", region: config["upstream_region"] ?? "us-east-1",
                bucket: config["upstream_bucket"] ?? "", prefix: config["upstream_prefix"] ?? "",
                credentialsFile: config["upstream_credentials_file"] ?? ""), gateway: gateway.name)
        }
        let folder = config["repository"].flatMap { $0.isEmpty ? nil : $0 } ?? home.backupsDirectory
        return StackRepository(setting: .folder((folder as NSString).standardizingPath), gateway: gateway.name)
    }

    /// The repository, for reading.
    func open() throws -> BackupRepository {
        switch setting {
        case .folder(let path):
            return BackupRepository(path: path)
        case .s3(let endpoint, let region, let bucket, let prefix, let credentialsFile):
            guard !endpoint.isEmpty, !bucket.isEmpty else {
                throw CLIError("the gateway is in s3 mode without upstream_endpoint and upstream_bucket: set them in its overlay", exitCode: 2)
            }
            guard !credentialsFile.isEmpty else {
                throw CLIError("the gateway's S3 repository \(location) has no upstream_credentials_file to read it with: name it, or pass the repository and --s3-credentials", exitCode: 2)
            }
            let credentials: S3Credentials
            do { credentials = try S3Credentials.load(path: credentialsFile) } catch {
                throw CLIError("cannot read the gateway's upstream key pair \(credentialsFile): \(error)", exitCode: 2)
            }
            return BackupRepository(store: S3Store(client: S3Client(endpoint: endpoint, region: region, credentials: credentials),
                                                   bucket: bucket, prefix: prefix))
        }
    }

    /// Whether `repository` (as opened from a command's argument) is this one.
    func isSame(as repository: BackupRepository) -> Bool {
        switch setting {
        case .folder(let path):
            guard repository.store is FolderStore else { return false }
            return Self.canonical(path) == Self.canonical(repository.path)
        case .s3(let endpoint, _, _, _, _):
            guard let other = repository.store as? S3Store else { return false }
            return other.location == location && other.client.endpoint == S3Client(endpoint: endpoint, credentials: nil).endpoint
        }
    }

    /// A folder with symlinks resolved (the folder may not exist yet).
    private static func canonical(_ path: String) -> String {
        ((path as NSString).standardizingPath as NSString).resolvingSymlinksInPath
    }
}
