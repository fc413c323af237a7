import Foundation

/// The folders of one stack's home: where its data, logs, sockets, secrets and backups live.
///
/// `$AUTOMATE_HOME`, else `/var/opt/automate` for root, else `$XDG_DATA_HOME/automate`
/// (`~/.local/share/automate`).
public struct AutomateHome: Sendable, Equatable {
    /// The home folder itself.
    public let path: String

    /// Creates the layout for `path` (nothing is created on disk).
    public init(path: String) {
        self.path = (path as NSString).standardizingPath
    }

    /// The home this process should use, following `AUTOMATE_HOME`, the effective user and XDG.
    public static func resolve(environment: [String: String] = ProcessInfo.processInfo.environment) -> AutomateHome {
        if let explicit = environment["AUTOMATE_HOME"], !explicit.isEmpty {
            return AutomateHome(path: absolute(explicit))
        }
        if geteuid() == 0 {
            return AutomateHome(path: "/var/opt/automate")
        }
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {
            return AutomateHome(path: xdg + "/automate")
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return AutomateHome(path: home + "/.local/share/automate")
    }

    /// Sockets of every service and of the supervisor (0700).
    public var runDirectory: String { path + "/run" }
    /// One log file per service plus the supervisor's.
    public var logDirectory: String { path + "/logs" }
    /// Each service's data folder lives below this.
    public var dataDirectory: String { path + "/data" }
    /// Per-service config overlays (`<service>.toml`, a `[config]` table).
    public var configDirectory: String { path + "/config" }
    /// Keys made by the secrets helper (0700).
    public var secretsDirectory: String { path + "/secrets" }
    /// The default backup repository.
    public var backupsDirectory: String { path + "/backups" }

    /// The supervisor's control socket.
    public var controlSocketPath: String { runDirectory + "/automate-supervisor.sock" }
    /// The supervisor's socket for the orchestrator (its user only): status, watch, and starting,
    /// holding and stopping services, which a restore needs; nothing else.
    public var orchestratorControlSocketPath: String { runDirectory + "/automate-supervisor.orchestrator.sock" }
    /// Held (flock) by the running supervisor; its content is the supervisor's pid.
    public var lockFilePath: String { runDirectory + "/automate-supervisor.lock" }
    /// The supervisor's own log.
    public var supervisorLogPath: String { logDirectory + "/supervisor.log" }

    /// The log file of one service.
    public func logPath(service: String) -> String { logDirectory + "/\(service).log" }
    /// The config overlay of one service.
    public func configOverlayPath(service: String) -> String { configDirectory + "/\(service).toml" }
    /// `<home>/config/external.toml`: external PostgreSQL and search clusters (``ExternalSettings``).
    public var externalSettingsPath: String { configDirectory + "/external.toml" }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}
