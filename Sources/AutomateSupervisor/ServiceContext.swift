import AutomateManifest
import AutomateRPC
import Foundation

/// How services reach the backup gateway: its endpoint and the key pair they sign with.
public struct GatewayAccess: Sendable, Equatable {
    public var endpoint: String
    public var region: String
    public var bucket: String
    public var credentials: GatewayCredentials
    /// Where the gateway itself reads the pair.
    public var credentialsFile: String
    /// The home's backup-repository passphrase (``RepositoryPassphrase``), which opens a chunked
    /// repository; each gateway-using service gets a copy only its user can read.
    public var repositoryPassphrase: String?

    public init(endpoint: String, region: String, bucket: String, credentials: GatewayCredentials, credentialsFile: String) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.credentials = credentials
        self.credentialsFile = credentialsFile
    }

    /// What a gateway-using service gets: `AUTOMATE_GATEWAY_ENDPOINT`, `..._REGION`, `..._BUCKET`, and
    /// `..._CREDENTIALS_FILE`, the key pair's file that only its user may read (`keyFile`). The pair
    /// itself is never in an environment: `/proc/<pid>/environ` is readable by more than the process.
    public func environment(keyFile: String) -> [String: String] {
        [
            "AUTOMATE_GATEWAY_ENDPOINT": endpoint, "AUTOMATE_GATEWAY_REGION": region, "AUTOMATE_GATEWAY_BUCKET": bucket,
            "AUTOMATE_GATEWAY_CREDENTIALS_FILE": keyFile,
        ]
    }

    /// Reads endpoint, region and bucket from the gateway's manifest (`[config]` listen, port, region,
    /// bucket), nil when the stack has no service of kind `gateway`.
    public static func from(manifests: ManifestSet, secrets: GatewaySecrets, credentials: GatewayCredentials) -> GatewayAccess? {
        guard let gateway = manifests.services.first(where: { $0.kind == .gateway }) else { return nil }
        let listen = gateway.config["listen"]?.description ?? "127.0.0.1"
        let port = gateway.config["port"]?.description ?? "10143"
        return GatewayAccess(
            endpoint: "http://\(listen):\(port)", region: gateway.config["region"]?.description ?? "us-east-1",
            // In s3 mode clients use the upstream bucket's name (the gateway maps nothing else).
            bucket: gateway.config["mode"]?.description == "s3"
                ? (gateway.config["upstream_bucket"]?.description ?? "backups")
                : (gateway.config["bucket"]?.description ?? "backups"),
            credentials: credentials,
            credentialsFile: secrets.path)
    }
}

/// Everything a service's process and hooks are started with, derived once from its manifest and the
/// stack's folders: the expanded command, the environment, the user, the log.
public struct ServiceContext: Sendable {
    /// The manifest with every `${...}` expanded.
    public let manifest: ServiceManifest
    /// The environment of the process and of its hooks.
    public let environment: [String: String]
    /// The user it runs as, with its supplementary groups (nil: the supervisor's).
    public let user: ServiceUser?
    /// The group its data folder is shared through (02770); nil: the folder is its own (0700).
    public let dataGroup: gid_t?
    /// The gateway key pair's file this service reads, written before each start; nil when it gets
    /// no key pair. The gateway's own file is kept by ``GatewaySecrets``.
    public let gatewayKey: (path: String, credentials: GatewayCredentials)?
    /// The backup-repository passphrase's file this service reads (`AUTOMATE_BACKUP_PASSPHRASE_FILE`),
    /// written before each start; nil when it gets none.
    public let passphraseFile: (path: String, passphrase: String)?
    /// Its data folder, `<home>/data/<data_dir>`.
    public let dataDirectory: String
    /// Its log.
    public let log: any LineSink
    /// Its hooks.
    public let hooks: HookRunner
    /// Its RPC socket path, when the manifest names one.
    public let socketPath: String?
    /// Its sd_notify socket (`NOTIFY_SOCKET`), when the manifest asks for a watchdog.
    public let notifySocketPath: String?

    /// Where the stack's pieces live, as the supervisor was told.
    public struct Layout: Sendable {
        public var home: AutomateHome
        public var hooksDirectory: String
        public var binDirectory: String
        /// Prepended to PATH for services and hooks (Python tools such as osmem-server, aws).
        public var toolsDirectories: [String]
        /// Files under `<home>/logs`, or the journal.
        public var logTarget: LogTarget = .file
        /// The backup gateway and its key pair, when the stack has a gateway.
        public var gateway: GatewayAccess?
        /// The manifests' folder, passed to services as `AUTOMATE_SERVICES_DIR` (the deployment-service
        /// reads the stack's manifests from it).
        public var servicesDirectory: String?
        public init(home: AutomateHome, hooksDirectory: String, binDirectory: String, toolsDirectories: [String]) {
            self.home = home
            self.hooksDirectory = hooksDirectory
            self.binDirectory = binDirectory
            self.toolsDirectories = toolsDirectories
        }
    }

    /// Variables from the supervisor's environment that services may see (everything else is left out,
    /// so a service behaves the same under systemd, a terminal or a test).
    static let passedThrough = ["TZ", "TMPDIR", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR"]

    /// Builds the context; `access` is the user the supervisor will switch to and what it may reach
    /// (nil: everything runs as the supervisor's user).
    public static func make(
        manifest: ServiceManifest, layout: Layout, access: ServiceAccess?,
        inherited: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ServiceContext {
        let home = layout.home
        let user = access?.user
        let runUser = user ?? ServiceUser.current()
        let variables = manifest.builtinVariables(
            in: home, binDirectory: layout.binDirectory, hooksDirectory: layout.hooksDirectory, runUser: runUser.name)
        let resolved = try manifest.resolved(using: VariableExpander(variables: variables, config: manifest.config))

        var environment: [String: String] = [:]
        for key in passedThrough { if let value = inherited[key] { environment[key] = value } }
        let basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        environment["PATH"] = (layout.toolsDirectories + [layout.binDirectory, basePath]).joined(separator: ":")
        environment["LANG"] = environment["LANG"] ?? "C.UTF-8"
        environment["HOME"] = runUser.homeDirectory
        environment["USER"] = runUser.name
        environment["LOGNAME"] = runUser.name
        environment.merge(variables) { $1 }
        environment["AUTOMATE_SUPERVISOR_SOCKET"] = manifest.kind == .orchestrator ? home.orchestratorControlSocketPath : home.controlSocketPath
        if let services = layout.servicesDirectory { environment["AUTOMATE_SERVICES_DIR"] = services }
        let socketPath = resolved.socket.map { home.runDirectory + "/" + $0 }
        if let socketPath { environment["AUTOMATE_SERVICE_SOCKET"] = socketPath }
        var notifySocketPath: String? = nil
        if let watchdog = resolved.health.watchdog {
            notifySocketPath = home.runDirectory + "/\(manifest.name).notify"
            environment["NOTIFY_SOCKET"] = notifySocketPath
            environment["WATCHDOG_USEC"] = String(watchdog.nanoseconds / 1000)
        }
        if let peers = access?.peers { environment[RPCPeerPolicy.environmentVariable] = peers.description }
        environment.merge(resolved.configEnvironment) { $1 }
        var gatewayKey: (path: String, credentials: GatewayCredentials)? = nil
        var passphraseFile: (path: String, passphrase: String)? = nil
        if let gateway = layout.gateway {
            if resolved.kind == .gateway {
                environment["AUTOMATE_GATEWAY_CREDENTIALS_FILE"] = gateway.credentialsFile
            }
            // The key pair goes to the services whose manifest may use the gateway, and to no other:
            // each gets a copy only its user can read.
            if resolved.backup.gateway {
                let path = GatewaySecrets.clientFilePath(home: home, service: manifest.name)
                gatewayKey = (path, gateway.credentials)
                environment.merge(gateway.environment(keyFile: path)) { $1 }
                if let passphrase = gateway.repositoryPassphrase {
                    let path = RepositoryPassphrase.clientFilePath(home: home, service: manifest.name)
                    passphraseFile = (path, passphrase)
                    environment["AUTOMATE_BACKUP_PASSPHRASE_FILE"] = path
                }
            }
        }
        environment.merge(resolved.environment) { $1 }

        return ServiceContext(
            manifest: resolved, environment: environment, user: user, dataGroup: access?.dataGroup,
            gatewayKey: gatewayKey, passphraseFile: passphraseFile, dataDirectory: variables["AUTOMATE_SERVICE_DATA"]!,
            log: layout.logTarget == .journal
                ? JournalLog(identifier: manifest.name) : LogFile(path: home.logPath(service: manifest.name)),
            hooks: HookRunner(hooksDirectory: layout.hooksDirectory, service: manifest.hooks.folder ?? manifest.name),
            socketPath: socketPath, notifySocketPath: notifySocketPath)
    }
}
