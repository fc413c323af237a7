import AutomateManifest
import AutomateSupervisor
import BackupRepository
import Foundation

/// The services deployed on this stack: its manifests (with config overlays), expanded the way the
/// supervisor expands them, so that declared backup paths are the real folders.
public struct StackServices: Sendable {
    /// One deployed service.
    public struct Service: Sendable {
        /// The manifest with `${...}` expanded.
        public var manifest: ServiceManifest
        /// The manifest file's text, as deployed.
        public var text: String
        /// The socket path when it has one.
        public var socketPath: String?

        /// Whether the deployment-service backs it up: it implements the contract or declares data.
        public var isBackedUp: Bool { manifest.kind != .orchestrator && manifest.backup.ownsData }

        public var record: DeployedServiceRecord {
            DeployedServiceRecord(
                name: manifest.name, kind: manifest.kind.rawValue, contract: manifest.backup.contract,
                dependsOn: manifest.dependsOn, manifest: "manifests/\(manifest.name).toml",
                databases: manifest.backup.databases, indices: manifest.backup.indices, paths: manifest.backup.paths)
        }
    }

    public var services: [Service]

    /// Loads `servicesDirectory` as the supervisor does, expanding with the variables of `environment`
    /// (the deployment-service's own: `AUTOMATE_HOME`, `AUTOMATE_BIN_DIR`, ...).
    public static func load(servicesDirectory: String, environment: [String: String]) throws -> StackServices {
        guard let homePath = environment["AUTOMATE_HOME"] else {
            throw DeploymentError.configuration("AUTOMATE_HOME is not set (start the deployment-service with automate-supervisor)")
        }
        let home = AutomateHome(path: homePath)
        let set = try ManifestLoader.load(servicesDirectory: servicesDirectory, home: home)
        var services: [Service] = []
        for manifest in set.startOrder.compactMap(set.manifest(named:)) {
            let resolved = try manifest.resolved(
                in: home, binDirectory: environment["AUTOMATE_BIN_DIR"] ?? "", hooksDirectory: environment["AUTOMATE_HOOKS_DIR"] ?? "",
                runUser: environment["AUTOMATE_RUN_USER"] ?? "")
            let text = (try? String(contentsOfFile: manifest.sourcePath, encoding: .utf8)) ?? ""
            services.append(Service(manifest: resolved, text: text, socketPath: resolved.socket.map { home.runDirectory + "/" + $0 }))
        }
        return StackServices(services: services)
    }
}

/// What goes wrong in the deployment-service.
public enum DeploymentError: Error, CustomStringConvertible, Sendable {
    case configuration(String)
    public var description: String {
        switch self { case .configuration(let m): return m }
    }
}
