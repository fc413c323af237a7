import Foundation

/// The backup gateway's own key pair: what services sign S3 requests with. Real S3 credentials never
/// pass through here; only the gateway reads those.
public struct GatewayCredentials: Sendable, Equatable {
    public let accessKeyID: String
    public let secretAccessKey: String

    /// A new random pair (getrandom(2) through the system generator): a 20-character key id starting
    /// `AKAT`, and a 40-character secret.
    public static func generate() -> GatewayCredentials {
        var generator = SystemRandomNumberGenerator()
        let upper = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        let secretAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        let id = "AKAT" + String((0..<16).map { _ in upper[Int.random(in: 0..<upper.count, using: &generator)] })
        let secret = String((0..<40).map { _ in secretAlphabet[Int.random(in: 0..<secretAlphabet.count, using: &generator)] })
        return GatewayCredentials(accessKeyID: id, secretAccessKey: secret)
    }
}

/// The secrets helper: makes the gateway's key pair on first start, keeps it in
/// `<home>/secrets/gateway.credentials` (0600 in a 0700 folder, written atomically), and rotates it on
/// request. The supervisor hands the pair to the gateway (the file) and to the services whose manifest
/// says `[backup] gateway = true` (their environment), and to nobody else.
public struct GatewaySecrets: Sendable {
    public let home: AutomateHome
    /// Owner of the folder and file (the gateway's user when the supervisor runs as root).
    public let owner: ServiceUser?

    public init(home: AutomateHome, owner: ServiceUser?) {
        self.home = home
        self.owner = owner
    }

    /// `<home>/secrets/gateway.credentials`.
    public var path: String { home.secretsDirectory + "/gateway.credentials" }

    /// Reads the pair, making one first if there is none.
    public func loadOrCreate() throws -> GatewayCredentials {
        if let existing = try load() { return existing }
        let fresh = GatewayCredentials.generate()
        try write(fresh)
        return fresh
    }

    /// Replaces the pair with a new one; the old one stops working once the gateway restarts.
    public func rotate() throws -> GatewayCredentials {
        let fresh = GatewayCredentials.generate()
        try write(fresh)
        return fresh
    }

    /// The stored pair, nil if there is none yet.
    public func load() throws -> GatewayCredentials? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw SupervisorError(.filesystem, "cannot read \(path): \(error.localizedDescription)")
        }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            values[parts[0]] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        guard let id = values["access_key_id"], let secret = values["secret_access_key"], !id.isEmpty, !secret.isEmpty else {
            throw SupervisorError(.filesystem, "\(path) has no access_key_id/secret_access_key: delete it to make a new pair, or run `automate gateway rotate-credentials`")
        }
        return GatewayCredentials(accessKeyID: id, secretAccessKey: secret)
    }

    /// Writes the pair atomically, 0600, in its 0700 folder.
    func write(_ credentials: GatewayCredentials) throws {
        let folder = home.secretsDirectory
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        chmod(folder, 0o700)
        if let owner, geteuid() == 0 { chown(folder, owner.uid, owner.gid) }
        let text = "access_key_id = \"\(credentials.accessKeyID)\"\nsecret_access_key = \"\(credentials.secretAccessKey)\"\n"
        try AtomicFile.write(text, to: path, mode: 0o600, owner: owner)
    }
}
