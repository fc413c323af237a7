import ArgumentParser
import Foundation
import Logging
import S3Gateway

@main
struct BackupGateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup-gateway",
        abstract: "S3-compatible gateway: serves backup repository folders (fs mode) or re-signs and proxies to a real S3 endpoint (s3 mode)."
    )

    enum Mode: String, ExpressibleByArgument { case fs, s3 }

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:9000"
    @Option(help: "fs: buckets are folders; s3: proxy to an upstream S3 endpoint.")
    var mode: Mode = .fs
    @Option(help: "fs mode: folder whose child folders are buckets.")
    var root: String?
    @Option(name: .customLong("bucket"), help: "fs mode: NAME=PATH, serve PATH as bucket NAME (repeatable).")
    var buckets: [String] = []
    @Option(help: "The gateway's own key pair: file (mode 0600 or stricter) with two lines, or access_key_id / secret_access_key.")
    var credentialsFile: String
    @Option(help: "Region clients sign for.")
    var region: String = "us-east-1"
    @Option(help: "s3 mode: upstream endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com.")
    var upstreamEndpoint: String?
    @Option(help: "s3 mode: upstream region (default: --region).")
    var upstreamRegion: String?
    @Option(help: "s3 mode: upstream bucket; also the bucket name clients use.")
    var upstreamBucket: String?
    @Option(help: "s3 mode: key prefix inside the upstream bucket.")
    var upstreamPrefix: String = ""
    @Option(help: "s3 mode: upstream key pair file (0600); else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.")
    var upstreamCredentialsFile: String?
    @Flag(help: "s3 mode: path-style upstream URLs (endpoint/bucket/key) instead of virtual-host (bucket.endpoint/key).")
    var upstreamPathStyle = false
    enum MetadataMode: String, ExpressibleByArgument { case auto, sideFolder = "side-folder" }
    @Option(help: "fs mode: where object metadata is kept: auto (extended attributes where the file system has them, else a hidden side folder) or side-folder.")
    var metadataStorage: MetadataMode = .auto
    @Option(help: "Also listen over TLS on HOST:PORT (for clients on other machines); needs --tls-certificate and --tls-key.")
    var tlsListen: String?
    @Option(help: "The TLS listener's certificate (PEM, with any intermediates).")
    var tlsCertificate: String?
    @Option(help: "The TLS listener's private key (PEM).")
    var tlsKey: String?
    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel: String = "info"

    func run() async throws {
        tuneMemoryForGateway()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "backup-gateway")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info

        guard let (host, port) = Self.hostAndPort(listen) else { throw ValidationError("--listen must be HOST:PORT") }
        var tls: TLSListener? = nil
        switch (tlsListen, tlsCertificate, tlsKey) {
        case (nil, nil, nil):
            break
        case (let address?, let certificate?, let key?):
            guard let (tlsHost, tlsPort) = Self.hostAndPort(address) else { throw ValidationError("--tls-listen must be HOST:PORT") }
            tls = TLSListener(host: tlsHost, port: tlsPort, certificateFile: certificate, keyFile: key)
        default:
            throw ValidationError("--tls-listen, --tls-certificate and --tls-key go together")
        }
        let creds = try loadCredentials(path: credentialsFile)
        let gatewayMode: GatewayConfig.Mode
        switch mode {
        case .fs:
            var map: [String: String] = [:]
            for b in buckets {
                guard let eq = b.firstIndex(of: "="), !b[..<eq].isEmpty, !b[b.index(after: eq)...].isEmpty else {
                    throw ValidationError("--bucket must be NAME=PATH, got \(b)")
                }
                map[String(b[..<eq])] = String(b[b.index(after: eq)...])
            }
            guard root != nil || !map.isEmpty else { throw ValidationError("fs mode needs --root DIR and/or --bucket NAME=PATH") }
            gatewayMode = .filesystem(root: root, buckets: map)
        case .s3:
            guard let ep = upstreamEndpoint, let bucket = upstreamBucket else {
                throw ValidationError("s3 mode needs --upstream-endpoint and --upstream-bucket")
            }
            let upCreds: Credentials
            if let f = upstreamCredentialsFile {
                upCreds = try loadCredentials(path: f)
            } else if let a = ProcessInfo.processInfo.environment["AWS_ACCESS_KEY_ID"], let s = ProcessInfo.processInfo.environment["AWS_SECRET_ACCESS_KEY"] {
                upCreds = Credentials(accessKeyId: a, secretAccessKey: s)
            } else {
                throw ValidationError("s3 mode needs --upstream-credentials-file or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
            }
            gatewayMode = .s3(UpstreamConfig(endpoint: ep, region: upstreamRegion ?? region, bucket: bucket, prefix: upstreamPrefix,
                                             pathStyle: upstreamPathStyle, credentials: upCreds))
        }
        let config = GatewayConfig(host: host, port: port, mode: gatewayMode, credentials: creds, region: region,
                                   metadataStorage: metadataStorage == .auto ? .automatic : .sideFolder, tls: tls)
        let log = logger, tlsHost = tls?.host ?? ""
        // SIGTERM / SIGINT: stop accepting, finish, exit 0.
        try await runGateway(config, logger: logger) { listener, port in
            log.notice(listener == "tls" ? "listening with TLS on \(tlsHost):\(port)" : "listening on \(host):\(port)")
        }
    }

    /// `HOST:PORT`, split at the last colon (an IPv6 address in brackets is not understood), port 0-65535.
    static func hostAndPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port),
              colon > text.startIndex else { return nil }
        return (String(text[..<colon]), port)
    }
}
