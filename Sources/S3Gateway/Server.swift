import CAutomateShims
import Foundation
import Hummingbird
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

    public init(host: String = "127.0.0.1", port: Int = 0, mode: Mode, credentials: Credentials, region: String = "us-east-1",
                metadataStorage: MetadataStorage = .automatic) {
        self.host = host; self.port = port; self.mode = mode
        self.credentials = credentials; self.region = region; self.metadataStorage = metadataStorage
    }
}

/// Limits heap retention (few malloc arenas, large buffers returned to the OS); call once at start.
public func tuneMemoryForGateway() {
    automate_malloc_tune()
}

/// Builds the Hummingbird application for a configuration. `onRunning` gets the bound port.
public func makeGatewayApplication(_ config: GatewayConfig, logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void = { _ in })
    throws -> some ApplicationProtocol
{
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
    let responder = GatewayResponder(verifier: SigV4Verifier(credentials: config.credentials, region: config.region), backend: backend, logger: logger)
    return Application(
        responder: responder,
        server: .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler(), ReceiveBufferLimit()], idleTimeout: .seconds(300))),
        configuration: .init(address: .hostname(config.host, port: config.port), serverName: "automate-backup-gateway"),
        onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
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
