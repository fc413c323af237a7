import CAutomateShims
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

public struct CredentialsFileError: Error, CustomStringConvertible {
    public var description: String
}

/// Reads a key pair from a file that must be mode 0600 or stricter and owned by us. Two forms:
/// two lines (access key id, then secret), or TOML-ish `access_key_id = "..."` / `secret_access_key = "..."`.
public func loadCredentials(path: String) throws -> Credentials {
    var st = stat()
    guard stat(path, &st) == 0 else { throw CredentialsFileError(description: "credentials file \(path): \(errnoText())") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw CredentialsFileError(description: "credentials file \(path) is not a regular file") }
    let perms = st.st_mode & 0o777
    guard perms & 0o077 == 0 else {
        throw CredentialsFileError(description: "credentials file \(path) has mode \(String(perms, radix: 8)); it must be 0600 or stricter (chmod 600 \(path))")
    }
    guard let data = FileManager.default.contents(atPath: path) else { throw CredentialsFileError(description: "cannot read credentials file \(path)") }
    return try parseCredentials(String(decoding: data, as: UTF8.self), source: path)
}

public func parseCredentials(_ text: String, source: String) throws -> Credentials {
    let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
    var kv: [String: String] = [:]
    for l in lines where l.contains("=") && !l.hasPrefix("[") {
        let eq = l.firstIndex(of: "=")!
        var v = l[l.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        if v.count >= 2, (v.hasPrefix("\"") && v.hasSuffix("\"")) || (v.hasPrefix("'") && v.hasSuffix("'")) { v = String(v.dropFirst().dropLast()) }
        kv[l[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] = v
    }
    if let a = kv["access_key_id"] ?? kv["aws_access_key_id"], let s = kv["secret_access_key"] ?? kv["aws_secret_access_key"] {
        guard !a.isEmpty, !s.isEmpty else { throw CredentialsFileError(description: "empty key in \(source)") }
        return Credentials(accessKeyId: a, secretAccessKey: s)
    }
    let plain = lines.filter { !$0.hasPrefix("[") }
    if plain.count == 2, !plain[0].contains("="), !plain[1].contains(" ") {
        return Credentials(accessKeyId: plain[0], secretAccessKey: plain[1])
    }
    throw CredentialsFileError(description: "\(source): expected two lines (access key id, secret) or access_key_id/secret_access_key entries")
}

/// Where S3 mode forwards to.
public struct UpstreamConfig: Sendable {
    public var endpoint: String
    public var region: String
    public var bucket: String
    public var prefix: String
    public var pathStyle: Bool
    public var credentials: Credentials

    public init(endpoint: String, region: String, bucket: String, prefix: String, pathStyle: Bool, credentials: Credentials) {
        self.endpoint = endpoint; self.region = region; self.bucket = bucket
        self.prefix = prefix; self.pathStyle = pathStyle; self.credentials = credentials
    }
}

public struct GatewayConfig: Sendable {
    public enum Mode: Sendable {
        case filesystem(root: String?, buckets: [String: String])
        case s3(UpstreamConfig)
    }
    public var host: String
    public var port: Int
    public var mode: Mode
    public var credentials: Credentials
    public var region: String
    /// fs mode: where object metadata is kept (extended attributes, else a hidden side folder).
    public var metadataStorage: MetadataStorage
    /// A second listener, with TLS, for clients on other machines (a search cluster writing snapshots);
    /// nil: none. The same buckets, key pair and signature checks as the plain one.
    public var tls: TLSListener?

    public init(host: String = "127.0.0.1", port: Int = 0, mode: Mode, credentials: Credentials, region: String = "us-east-1",
                metadataStorage: MetadataStorage = .automatic, tls: TLSListener? = nil) {
        self.host = host; self.port = port; self.mode = mode
        self.credentials = credentials; self.region = region; self.metadataStorage = metadataStorage
        self.tls = tls
    }
}

/// Where and with which certificate the gateway also listens over TLS.
public struct TLSListener: Sendable {
    public var host: String
    public var port: Int
    /// PEM: the server's certificate, then any intermediates.
    public var certificateFile: String
    /// PEM: its private key (readable by the gateway's user).
    public var keyFile: String

    public init(host: String, port: Int, certificateFile: String, keyFile: String) {
        self.host = host; self.port = port; self.certificateFile = certificateFile; self.keyFile = keyFile
    }

    /// The server side of TLS 1.2 and later with the listener's certificate and key; throws naming the
    /// file that cannot be read or parsed.
    func configuration() throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw CredentialsFileError(description: "TLS certificate \(certificateFile): \(error) (a PEM file the gateway's user can read)")
        }
        guard !chain.isEmpty else { throw CredentialsFileError(description: "TLS certificate \(certificateFile) holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw CredentialsFileError(description: "TLS key \(keyFile): \(error) (a PEM private key the gateway's user can read)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        return tls
    }
}

/// Limits heap retention (few malloc arenas, large buffers returned to the OS); call once at start.
public func tuneMemoryForGateway() {
    automate_malloc_tune()
}

/// The gateway's request handling for a configuration: one per process, shared by its listeners.
public func makeGatewayResponder(_ config: GatewayConfig, logger: Logger) throws -> GatewayResponder {
    let backend: any S3Backend
    switch config.mode {
    case .filesystem(let root, let buckets):
        if let root { guard statPath(root)?.isDir == true else { throw CredentialsFileError(description: "root folder \(root) does not exist") } }
        for (n, p) in buckets {
            guard statPath(p)?.isDir == true else { throw CredentialsFileError(description: "bucket \(n): folder \(p) does not exist") }
        }
        backend = FSBackend(store: FSStore(root: root, mappings: buckets, metadataStorage: config.metadataStorage), region: config.region)
    case .s3(let up):
        backend = try ProxyBackend(upstream: up, region: config.region, logger: logger)
    }
    return GatewayResponder(verifier: SigV4Verifier(credentials: config.credentials, region: config.region), backend: backend, logger: logger)
}

/// Builds the Hummingbird application of the plain listener for a configuration. `onRunning` gets the
/// bound port.
public func makeGatewayApplication(_ config: GatewayConfig, logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void = { _ in })
    throws -> some ApplicationProtocol
{
    try makeGatewayApplication(responder: try makeGatewayResponder(config, logger: logger), host: config.host, port: config.port,
                               tls: nil, logger: logger, onRunning: onRunning)
}

/// One listener's application over `responder`: HTTP/1.1 with `Expect: 100-continue` answered and bounded
/// receive buffers, inside TLS when `tls` is given (its certificate and key are read now), else with GET bodies
/// sent by `sendfile` (``FileRegionWriter``).
func makeGatewayApplication(responder: GatewayResponder, host: String, port: Int, tls: TLSListener?, logger: Logger,
                            onRunning: @escaping @Sendable (Int) async -> Void) throws -> some ApplicationProtocol {
    let configuration = HTTP1Channel.Configuration(additionalChannelHandlers: [ExpectContinueHandler(), ReceiveBufferLimit()], idleTimeout: .seconds(300))
    return Application(
        responder: responder,
        // GETs send their bodies with sendfile on the plain listener; TLS needs the bytes in user space.
        server: try tls.map { try .tls(.http1(configuration: configuration), tlsConfiguration: $0.configuration()) }
            ?? .http1WithFileRegions(configuration: configuration),
        configuration: .init(address: .hostname(host, port: port), serverName: "automate-backup-gateway"),
        onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
}

/// Runs the gateway until SIGTERM or SIGINT: the plain listener and, when configured, the TLS one, over
/// one responder (so a multipart upload may go through either). `onRunning` gets each listener's name
/// (`plain`, `tls`) and bound port. Either listener failing stops both.
public func runGateway(_ config: GatewayConfig, logger: Logger, onRunning: @escaping @Sendable (String, Int) async -> Void) async throws {
    let responder = try makeGatewayResponder(config, logger: logger)
    let plain = try makeGatewayApplication(responder: responder, host: config.host, port: config.port, tls: nil, logger: logger) {
        await onRunning("plain", $0)
    }
    guard let listener = config.tls else {
        try await plain.runService()
        return
    }
    let tls = try makeGatewayApplication(responder: responder, host: listener.host, port: listener.port, tls: listener, logger: logger) {
        await onRunning("tls", $0)
    }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await plain.runService() }
        group.addTask { try await tls.runService() }
        try await group.next()
        group.cancelAll()
    }
}

/// A gateway running inside this process (tests, embedding). `stop()` shuts it down.
public final class RunningGateway: Sendable {
    public let port: Int
    let task: Task<Void, any Error>

    init(port: Int, task: Task<Void, any Error>) {
        self.port = port; self.task = task
    }

    public static func start(_ config: GatewayConfig, logger: Logger) async throws -> RunningGateway {
        let (stream, cont) = AsyncStream<Int>.makeStream()
        let app = try makeGatewayApplication(config, logger: logger) { port in cont.yield(port); cont.finish() }
        let task = Task {
            defer { cont.finish() }
            try await app.run()
        }
        var it = stream.makeAsyncIterator()
        guard let port = await it.next() else { throw CredentialsFileError(description: "gateway did not start") }
        return RunningGateway(port: port, task: task)
    }

    public func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}
