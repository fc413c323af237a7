import AutomateManifest
import Foundation
import Logging

/// Re-reads the manifests (on SIGHUP or `automate reload`) and applies them; an invalid manifest
/// changes nothing and is reported. Tells systemd `RELOADING=1`, then `READY=1`.
public actor Reloader {
    private let supervisor: Supervisor
    private let servicesDirectory: String
    private let home: AutomateHome
    private let notifier: SystemdNotifier
    private let logger: Logger

    public init(supervisor: Supervisor, servicesDirectory: String, home: AutomateHome, notifier: SystemdNotifier, logger: Logger) {
        self.supervisor = supervisor
        self.servicesDirectory = servicesDirectory
        self.home = home
        self.notifier = notifier
        self.logger = logger
    }

    /// One reload at a time (the actor queues a second).
    public func reload() async -> Result<Supervisor.ReloadSummary, Error> {
        notifier.reloading()
        defer {
            Task {
                let (healthy, total) = await supervisor.readiness()
                notifier.ready(status: "\(healthy)/\(total) services healthy")
            }
        }
        let manifests: ManifestSet
        do {
            manifests = try ManifestLoader.load(servicesDirectory: servicesDirectory, home: home)
        } catch {
            logger.error("reload refused, nothing changed: invalid manifests:\n\(error)")
            return .failure(error)
        }
        do {
            let access = try await ServiceUsers.resolve(for: manifests, home: home, logger: logger)
            try ServiceUsers.prepareRunDirectory(home: home, access: access)
            let summary = try await supervisor.reload(manifests: manifests, access: access)
            logger.info("reloaded: \(summary.description)")
            return .success(summary)
        } catch {
            logger.error("reload failed: \(error)")
            return .failure(error)
        }
    }
}
