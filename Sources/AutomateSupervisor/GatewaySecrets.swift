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
/// `<home>/secrets/gateway.credentials` (0600, the gateway's user's, written atomically), and rotates it
/// on request. The supervisor hands the pair to the gateway (that file) and to each service whose
/// manifest says `[backup] gateway = true` (a copy, `<home>/secrets/<service>.gateway.credentials`,
/// 0400 and that service's user's), and to nobody else. The folder is root's, 0711 when services run
/// as users of their own (each reaches its own file by name, none lists the others), else 0700.
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

    /// Reads the pair, making one first if there is none. An existing file (and its folder) gets the
    /// owners and modes of this stack's users, as a home made before them needs.
    public func loadOrCreate() throws -> GatewayCredentials {
        if let existing = try load() {
            try write(existing)
            return existing
        }
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

    /// The copy of the pair a gateway user reads.
    public static func clientFilePath(home: AutomateHome, service: String) -> String {
        home.secretsDirectory + "/\(service).gateway.credentials"
    }

    /// Writes a gateway user's copy of the pair (atomically, 0400, owned by `user`).
    public static func writeClientFile(_ credentials: GatewayCredentials, to path: String, user: ServiceUser?) throws {
        try AtomicFile.write(text(credentials), to: path, mode: 0o400, owner: user)
    }

    /// Writes the pair atomically, 0600, in its folder.
    func write(_ credentials: GatewayCredentials) throws {
        let folder = home.secretsDirectory
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // Root's folder (an older home gave it to the gateway's user); traversable by the service users.
        if geteuid() == 0 { chown(folder, 0, 0) }
        chmod(folder, owner == nil ? 0o700 : 0o711)
        try AtomicFile.write(Self.text(credentials), to: path, mode: 0o600, owner: owner)
    }

    private static func text(_ credentials: GatewayCredentials) -> String {
        "access_key_id = \"\(credentials.accessKeyID)\"\nsecret_access_key = \"\(credentials.secretAccessKey)\"\n"
    }
}
