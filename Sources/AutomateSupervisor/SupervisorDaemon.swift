import AutomateManifest
import AutomateRPC
import CAutomateShims
import Foundation
import Logging

/// The `automate-supervisor` process from start to exit: prepares the home, takes its lock, loads and
/// validates the manifests, serves the control socket, runs every service, and stops them all on
/// SIGTERM/SIGINT or a `Shutdown` call.
public struct SupervisorDaemon: Sendable {
    /// Command-line settings.
    public struct Options: Sendable {
        public var home: AutomateHome
        public var servicesDirectory: String
        public var hooksDirectory: String
        public var binDirectory: String
        public var toolsDirectories: [String]
        /// Log to stderr as well as to the supervisor log.
        public var foreground: Bool
        /// A descriptor to write one readiness line to (`ready <pid>` or `error: ...`), then close.
        public var readyDescriptor: Int32?
        /// Where service output goes; nil: the journal when stderr is the journal, else files.
        public var logTarget: LogTarget?
        /// Start only these services and their dependencies; the others stay `held` until started by
        /// name (a restore). Nil: start everything.
        public var startOnly: [String]?

        public init(
            home: AutomateHome, servicesDirectory: String, hooksDirectory: String, binDirectory: String,
            toolsDirectories: [String], foreground: Bool, readyDescriptor: Int32?
        ) {
            self.home = home
            self.servicesDirectory = servicesDirectory
            self.hooksDirectory = hooksDirectory
            self.binDirectory = binDirectory
            self.toolsDirectories = toolsDirectories
            self.foreground = foreground
            self.readyDescriptor = readyDescriptor
        }
    }

    public let options: Options

    public init(options: Options) {
        self.options = options
    }

    /// Runs until shutdown. Returns the process exit code (0 after a clean stop, 2 for invalid
    /// manifests, 1 for other start-up failures).
    public func run() async -> Int32 {
        let home = options.home
        umask(0o027)
        signal(SIGPIPE, SIG_IGN)
        do {
            try prepareHome(home)
        } catch {
            return fail("\(error)", code: 1, logger: nil)
        }
        let logTarget = options.logTarget ?? (JournalLog.standardErrorIsJournal() ? .journal : .file)
        let ownLog: any LineSink = logTarget == .journal
            ? JournalLog(identifier: "automate-supervisor") : LogFile(path: home.supervisorLogPath)
        // Under systemd the journal already has our stderr: don't write every line twice.
        let handler = SupervisorLogHandler(file: ownLog, toStandardError: options.foreground && logTarget == .file)
        let logger = Logger(label: "automate-supervisor") { _ in handler }

        let lock: SupervisorLock
        do {
            lock = try SupervisorLock.acquire(path: home.lockFilePath)
        } catch {
            return fail("\(error)", code: 1, logger: logger)
        }
        defer { lock.release() }
        ServiceUsers.clearRunDirectory(home: home)

        let manifests: ManifestSet
        do {
            manifests = try ManifestLoader.load(servicesDirectory: options.servicesDirectory, home: home)
        } catch let errors as ManifestErrors {
            return fail("invalid manifests, nothing was started:\n\(errors)", code: 2, logger: logger)
        } catch {
            return fail("\(error)", code: 2, logger: logger)
        }
        if let unknown = options.startOnly?.filter({ manifests.manifest(named: $0) == nil }), !unknown.isEmpty {
            let known = manifests.services.map(\.name).joined(separator: ", ")
            return fail("--start-only \(unknown.joined(separator: ", ")): no such service (known: \(known))", code: 2, logger: logger)
        }

        let access: [String: ServiceAccess]
        do {
            access = try await ServiceUsers.resolve(for: manifests, home: home, logger: logger)
            try ServiceUsers.prepareRunDirectory(home: home, access: access)
        } catch {
            return fail("\(error)", code: 1, logger: logger)
        }

        // Grandchildren are out of PR_SET_PDEATHSIG's reach: the guard kills their groups if we die.
        if automate_group_guard_start() < 0 {
            logger.warning("could not start the process-group guard: \(String(cString: strerror(errno)))")
        }
        if automate_set_child_subreaper() != 0 {
            logger.warning("could not become a child subreaper: \(String(cString: strerror(errno)))")
        }

        var layout = ServiceContext.Layout(
            home: home, hooksDirectory: options.hooksDirectory, binDirectory: options.binDirectory,
            toolsDirectories: options.toolsDirectories)
        layout.logTarget = logTarget
        layout.servicesDirectory = options.servicesDirectory
        // The secrets helper: the gateway's key pair, made on first start.
        var secrets: GatewaySecrets? = nil
        if let gateway = manifests.services.first(where: { $0.kind == .gateway }) {
            let owner = access[gateway.name]?.user
            let store = GatewaySecrets(home: home, owner: owner)
            do {
                let credentials = try store.loadOrCreate()
                layout.gateway = GatewayAccess.from(manifests: manifests, secrets: store, credentials: credentials)
                // The secrets helper's passphrase of a chunked repository, made on first start too.
                layout.gateway?.repositoryPassphrase = try RepositoryPassphrase(home: home).loadOrCreate()
                try prepareRepository(home: home, owner: owner, logger: logger)
            } catch {
                return fail("\(error)", code: 1, logger: logger)
            }
            secrets = store
        }
        let supervisor: Supervisor
        do {
            supervisor = try await Supervisor(
                configuration: .init(layout: layout), manifests: manifests, access: access, logger: logger)
        } catch {
            return fail("invalid manifests, nothing was started:\n\(error)", code: 2, logger: logger)
        }
        // Programs and hooks the service users cannot reach fail here, before anything starts.
        let unreachable = await supervisor.unreachableFiles()
        if !unreachable.isEmpty {
            return fail(unreachable.joined(separator: "\n") + "\nnothing was started: clone or install where every service user can reach "
                        + "(not under /root or another 0700 home), or make the folders named above reachable", code: 2, logger: logger)
        }

        let notifier = SystemdNotifier()
        let reloader = Reloader(
            supervisor: supervisor, servicesDirectory: options.servicesDirectory, home: home, notifier: notifier,
            logger: logger)
        let (shutdownRequests, requestShutdown) = AsyncStream<String>.makeStream()
        let signals = SignalWatcher(signals: [SIGTERM, SIGINT, SIGHUP]) { signal in
            if signal == SIGHUP {
                Task { _ = await reloader.reload() }
            } else {
                requestShutdown.yield("received \(SignalName.name(of: signal))")
            }
        }
        // The control socket: the operators only (root and the supervisor's user; the socket is theirs).
        var control = RPCServer.Configuration(socketPath: home.controlSocketPath)
        control.peers = RPCPeerPolicy(trusted: [0, UInt32(geteuid())])
        let server = RPCServer(configuration: control, logger: logger)
        let rotate: (@Sendable () async throws -> (restarted: [String], accessKeyID: String))? = secrets.map { store in
            { @Sendable in
                let credentials = try store.rotate()
                guard var access = GatewayAccess.from(manifests: await supervisor.manifests, secrets: store, credentials: credentials) else {
                    throw SupervisorError(.unknownService, "this stack has no backup gateway")
                }
                access.repositoryPassphrase = try RepositoryPassphrase(home: home).load()
                logger.notice("gateway key pair rotated (new access key id \(credentials.accessKeyID))")
                return (try await supervisor.updateGateway(access), credentials.accessKeyID)
            }
        }
        ControlService.register(
            on: server, supervisor: supervisor, home: home, reload: { await reloader.reload() }, rotateGateway: rotate
        ) {
            requestShutdown.yield("shutdown requested over the control socket")
        }
        do {
            try await server.start()
        } catch {
            return fail("cannot serve the control socket: \(error)", code: 1, logger: logger)
        }
        // The orchestrator (which relaunches services during a restore) gets a socket of its own,
        // reachable by its user only, with the service-control methods and nothing else.
        var orchestratorServer: RPCServer? = nil
        if let orchestrator = manifests.services.first(where: { $0.kind == .orchestrator }) {
            let path = home.orchestratorControlSocketPath
            var configuration = RPCServer.Configuration(socketPath: path)
            let orchestratorUID = access[orchestrator.name].map { UInt32($0.user.uid) } ?? UInt32(geteuid())
            configuration.peers = RPCPeerPolicy(trusted: [0, UInt32(geteuid()), orchestratorUID])
            let made = RPCServer(configuration: configuration, logger: logger)
            ControlService.registerServiceControl(on: made, supervisor: supervisor, home: home)
            do {
                try await made.start()
                if geteuid() == 0, let user = access[orchestrator.name]?.user, chown(path, user.uid, user.gid) != 0 {
                    throw SupervisorError(.filesystem, "cannot give \(path) to \(user.name): \(String(cString: strerror(errno)))")
                }
            } catch {
                await made.shutdown()
                await server.shutdown()
                return fail("cannot serve the orchestrator's control socket: \(error)", code: 1, logger: logger)
            }
            orchestratorServer = made
        }
        logger.info("supervisor \(getpid()) serving \(home.controlSocketPath) for \(home.path)")
        signalReady("ready \(getpid())")

        let systemd = notifier.enabled ? Task { await Self.reportToSystemd(supervisor: supervisor, notifier: notifier) } : nil
        let watchdog = notifier.watchdogInterval.map { interval in
            Task {
                // Pinged from the supervisor's own actor: a stuck supervisor stops pinging.
                while !Task.isCancelled {
                    await supervisor.heartbeat()
                    notifier.watchdogPing()
                    try? await Task.sleep(for: interval / 2)
                }
            }
        }

        await supervisor.startAll(only: options.startOnly)
        var reasons = shutdownRequests.makeAsyncIterator()
        let reason = await reasons.next() ?? "shutdown"
        logger.info("\(reason): stopping")
        notifier.stopping()
        systemd?.cancel()
        await supervisor.stopAll()
        watchdog?.cancel()
        await supervisor.finishEvents()
        await orchestratorServer?.shutdown()
        await server.shutdown()
        signals.cancel()
        logger.info("supervisor stopped")
        return 0
    }

    /// Keeps systemd's STATUS= current and sends READY=1 once every service is healthy for the first time.
    private static func reportToSystemd(supervisor: Supervisor, notifier: SystemdNotifier) async {
        var announced = false
        var last = ""
        for await event in await supervisor.events(includeCurrent: true) {
            if Task.isCancelled { return }
            let (healthy, total) = await supervisor.readiness()
            var text = "\(healthy)/\(total) services healthy"
            if event.kind == "supervisor" && event.message.hasPrefix("reloaded") { text = "reloaded; " + text }
            if !announced && healthy == total {
                announced = true
                last = text
                notifier.ready(status: text)
            } else if text != last {
                last = text
                notifier.status(text)
            }
        }
    }

    private func prepareHome(_ home: AutomateHome) throws {
        let folders: [(String, mode_t)] = [
            (home.path, 0o755), (home.logDirectory, 0o750), (home.dataDirectory, 0o755),
            (home.configDirectory, 0o755), (home.secretsDirectory, 0o700), (home.runDirectory, 0o700),
        ]
        for (path, mode) in folders {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw SupervisorError(.filesystem, "cannot create \(path): \(error.localizedDescription)")
            }
            // Exact modes, whatever the umask and whoever made the folder first.
            if chmod(path, mode) != 0 {
                throw SupervisorError(.filesystem, "cannot set mode of \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The default backup repository, `<home>/backups`: the gateway's alone (0700). One made when every
    /// service ran as one user is handed over to the gateway's user, every file in it.
    private func prepareRepository(home: AutomateHome, owner: ServiceUser?, logger: Logger) throws {
        let path = home.backupsDirectory
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, owner == nil ? 0o750 : 0o700)
        var info = stat()
        if let owner, geteuid() == 0, stat(path, &info) == 0, info.st_uid != owner.uid {
            let count = try ServiceFiles.handOver(path, to: owner.uid, group: owner.gid, name: owner.name)
            logger.notice("moved \(path) (\(count) files) from uid \(info.st_uid) to \(owner.name)")
        }
    }

    private func signalReady(_ line: String) {
        guard let fd = options.readyDescriptor else { return }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    private func fail(_ message: String, code: Int32, logger: Logger?) -> Int32 {
        logger?.error("\(message)")
        FileHandle.standardError.write(Data("automate-supervisor: \(message)\n".utf8))
        signalReady("error: \(message.replacingOccurrences(of: "\n", with: "\n  "))")
        return code
    }
}
