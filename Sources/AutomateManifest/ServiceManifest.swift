/// One service, as declared by `services/<name>.toml` and validated.
///
/// See the repository's `services/` folder for examples; every optional field documents its default.
public struct ServiceManifest: Sendable, Equatable {
    /// `[service] name`: `[a-z0-9-]{1,63}`, equal to the file name without `.toml`.
    public var name: String
    /// `[service] description`. Default empty.
    public var description: String
    /// `[service] kind`. Default ``ServiceKind/domain``.
    public var kind: ServiceKind
    /// `[service] command`: the program and its arguments, not yet `${...}`-expanded. The first element is
    /// an absolute path (after expansion) or a bare program name looked up in `PATH`.
    public var command: [String]
    /// `[service] user`: the user it runs as when the supervisor runs as root (ignored otherwise). Default
    /// nil: its own system user, ``defaultUserName``.
    public var user: String?
    /// `[service] depends_on`: services that must be healthy before this one starts. Default none.
    public var dependsOn: [String]
    /// `[service] shared_with`: services that may read and write this service's data folder (the
    /// supervisor makes it group-shared with them when it runs as root). A name the stack does not
    /// run is allowed (a partial stack shares with nobody). Default none.
    public var sharedWith: [String] = []
    /// `[service] callers`: services that call this one's socket without depending on it (the database
    /// server's `archive_command` calls the pg-sidecar, which depends on the server). Like dependents,
    /// they get its group when the supervisor runs as root and are clients of its RPC peer policy. A
    /// name the stack does not run is allowed. Default none.
    public var callers: [String] = []
    /// `[service] external`: which server of `<home>/config/external.toml` stands in for this service
    /// (`postgresql` or `search`, see ``ExternalSettings``): when that table is set the service is not
    /// launched, a watcher of the external server takes its place. Default nil.
    public var external: ExternalSettings.Kind?
    /// Files the supervisor copies for this service before each start, readable by its user only (an
    /// external server's password and CA, set by ``ExternalSettings``; never read from a manifest file).
    public var secretFiles: [SecretFileCopy] = []
    /// `[service] socket`: file name of its RPC socket inside the run dir. Default nil (no RPC socket).
    public var socket: String?
    /// `[service] data_dir`: folder name under `<home>/data`. Default: the service name.
    public var dataDir: String
    /// `[service] working_directory`: absolute after expansion. Default nil (the supervisor's choice).
    public var workingDirectory: String?
    /// `[health]`.
    public var health: HealthCheckSpec
    /// `[restart]`.
    public var restart: RestartSpec
    /// `[stop]`.
    public var stop: StopSpec
    /// `[hooks]`.
    public var hooks: HookSpec
    /// `[environment]`: extra environment of the process (values not yet expanded). Default none.
    public var environment: [String: String]
    /// `[config]`: values passed to hooks as `AUTOMATE_CFG_<KEY>` and usable as `${cfg.<key>}`. Default none.
    public var config: [String: ConfigValue]
    /// `[backup]`.
    public var backup: BackupSpec
    /// The file it was loaded from, as given to the loader.
    public var sourcePath: String

    /// Creates a manifest; every optional part defaults to its documented default.
    public init(
        name: String, description: String = "", kind: ServiceKind = .domain, command: [String],
        user: String? = nil, dependsOn: [String] = [], socket: String? = nil, dataDir: String? = nil,
        workingDirectory: String? = nil, health: HealthCheckSpec = HealthCheckSpec(),
        restart: RestartSpec = RestartSpec(), stop: StopSpec = .default, hooks: HookSpec = HookSpec(),
        environment: [String: String] = [:], config: [String: ConfigValue] = [:], backup: BackupSpec = BackupSpec(),
        sourcePath: String = ""
    ) {
        self.name = name
        self.description = description
        self.kind = kind
        self.command = command
        self.user = user
        self.dependsOn = dependsOn
        self.socket = socket
        self.dataDir = dataDir ?? name
        self.workingDirectory = workingDirectory
        self.health = health
        self.restart = restart
        self.stop = stop
        self.hooks = hooks
        self.environment = environment
        self.config = config
        self.backup = backup
        self.sourcePath = sourcePath
    }

    /// The environment variable name a config key is passed as: `AUTOMATE_CFG_<KEY upper-cased>`.
    public static func configEnvironmentName(_ key: String) -> String {
        "AUTOMATE_CFG_" + key.uppercased()
    }

    /// The `[config]` values as hook environment: `AUTOMATE_CFG_PORT=10145`.
    public var configEnvironment: [String: String] {
        var env: [String: String] = [:]
        for (key, value) in config { env[Self.configEnvironmentName(key)] = value.description }
        return env
    }

    /// A variable table for ``VariableExpander`` holding every builtin variable for this service, from the
    /// supervisor's folders. `AUTOMATE_SERVICE_DATA` is `<dataRoot>/<dataDir>`.
    public func builtinVariables(
        home: String, runDir: String, dataRoot: String, logDir: String, binDir: String, hooksDir: String,
        runUser: String
    ) -> [String: String] {
        [
            "AUTOMATE_HOME": home, "AUTOMATE_RUN_DIR": runDir, "AUTOMATE_DATA_DIR": dataRoot,
            "AUTOMATE_LOG_DIR": logDir, "AUTOMATE_BIN_DIR": binDir, "AUTOMATE_HOOKS_DIR": hooksDir,
            "AUTOMATE_SERVICE": name, "AUTOMATE_SERVICE_DATA": dataRoot + "/" + dataDir,
            "AUTOMATE_RUN_USER": runUser,
        ]
    }
}
