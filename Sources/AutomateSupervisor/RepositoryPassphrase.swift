import Foundation

/// The secrets helper's passphrase for the stack's chunked backup repository: 32 random bytes as 64 hex
/// digits in `<home>/secrets/backup-repository.passphrase` (0600, root's or the home owner's; never a
/// service's), made by `automate backup repository init` when no passphrase is given, so that scheduled
/// backups need nobody to type one.
///
/// It lives in the home, which a lost machine takes with it: `automate backup key export` prints it to
/// keep somewhere else, and without it (or another key added to the repository) the backups are lost.
public struct RepositoryPassphrase: Sendable {
    public let home: AutomateHome

    public init(home: AutomateHome) {
        self.home = home
    }

    /// `<home>/secrets/backup-repository.passphrase`.
    public var path: String { home.secretsDirectory + "/backup-repository.passphrase" }

    /// The copy a gateway-using service reads (0400, its user's), `<home>/secrets/<service>.backup-passphrase`.
    public static func clientFilePath(home: AutomateHome, service: String) -> String {
        home.secretsDirectory + "/\(service).backup-passphrase"
    }

    /// Replaces the passphrase (atomically, 0600): a restore from another machine's repository makes
    /// its passphrase the home's, so that the services can read it.
    public func store(_ passphrase: String) throws {
        try FileManager.default.createDirectory(atPath: home.secretsDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(passphrase + "\n", to: path, mode: 0o600)
    }

    /// The passphrase, nil when the home has none.
    public func load() throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let line = text.split(separator: "\n").first, line.count >= 32 else {
            throw SupervisorError(.filesystem, "\(path) holds no passphrase (64 hex digits on its first line): restore it from where you exported it")
        }
        return String(line)
    }

    /// The passphrase, made first when the home has none.
    public func loadOrCreate() throws -> String {
        if let existing = try load() { return existing }
        var generator = SystemRandomNumberGenerator()
        let fresh = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        try FileManager.default.createDirectory(atPath: home.secretsDirectory, withIntermediateDirectories: true)
        try AtomicFile.write(fresh + "\n", to: path, mode: 0o600)
        return fresh
    }
}
