import ChunkStore
import Foundation
import ServiceKit
import ServiceSettings

/// The deployment-service's settings, from the environment the supervisor gives it.
public struct DeploymentConfig: Sendable {
    /// Where the gateway is and the sidecars' sockets.
    public var kit: KitConfig
    /// The stack's manifests (`AUTOMATE_SERVICES_DIR`).
    public var servicesDirectory: String
    /// The deployment-service's own environment (for expanding the other manifests).
    public var environment: [String: String]
    /// Its store, `<data>/deployment-service/state.sqlite`.
    public var storePath: String
    /// Services backed up at once (`[config] max_parallel`, default 4).
    public var maxParallel: Int = 4
    /// Time a service may take for its backup (`[config] service_timeout_seconds`, default 3600).
    public var serviceTimeout: Duration = .seconds(3600)
    /// The format a new (empty) repository gets at its first backup (`[config] repository_format`,
    /// chunked or plain; default chunked). A repository that holds backups keeps its format.
    public var newRepositoryFormat: RepositoryFormat.Kind = .chunked

    public init(kit: KitConfig, servicesDirectory: String, environment: [String: String], storePath: String) {
        self.kit = kit
        self.servicesDirectory = servicesDirectory
        self.environment = environment
        self.storePath = storePath
    }

    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> DeploymentConfig {
        let kit = try KitConfig.fromEnvironment(env)
        guard let services = env["AUTOMATE_SERVICES_DIR"], !services.isEmpty else {
            throw DeploymentError.configuration("AUTOMATE_SERVICES_DIR is not set (start the deployment-service with automate-supervisor)")
        }
        guard let data = env["AUTOMATE_SERVICE_DATA"], !data.isEmpty else {
            throw DeploymentError.configuration("AUTOMATE_SERVICE_DATA is not set (start the deployment-service with automate-supervisor)")
        }
        var config = DeploymentConfig(kit: kit, servicesDirectory: services, environment: env, storePath: data + "/state.sqlite")
        let settings = ServiceSettings(env)
        if let n = try settings.int("max_parallel", in: 1...64) { config.maxParallel = n }
        if let s = try settings.int("service_timeout_seconds", in: 1...604_800) { config.serviceTimeout = .seconds(s) }
        if let f = try settings.choice("repository_format", RepositoryFormat.Kind.allCases.map(\.rawValue)) {
            config.newRepositoryFormat = RepositoryFormat.Kind(rawValue: f)!
        }
        return config
    }
}
