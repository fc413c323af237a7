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
        /// Whether a stack backup asks anything of it: the data it owns, or a base backup of its cluster
        /// (`[backup] cluster`, which a normal restore leaves alone).
        public var takesPartInBackups: Bool { isBackedUp || (manifest.kind != .orchestrator && manifest.backup.cluster) }

        public var record: DeployedServiceRecord {
            DeployedServiceRecord(
                name: manifest.name, kind: manifest.kind.rawValue, contract: manifest.backup.contract,
                dependsOn: manifest.dependsOn, manifest: "manifests/\(manifest.name).toml",
                databases: manifest.backup.databases, indices: manifest.backup.indices, paths: manifest.backup.paths)
        }
    }

    public var services: [Service]
    /// The manifests the services come from (overlays applied, not expanded), and how to expand them.
    private let set: ManifestSet
    private let home: AutomateHome
    private let environment: [String: String]
    /// Manifest texts that replaced the services folder's (``relaunching(from:source:)``), by name.
    private let texts: [String: String]

    /// Loads `servicesDirectory` as the supervisor does, expanding with the variables of `environment`
    /// (the deployment-service's own: `AUTOMATE_HOME`, `AUTOMATE_BIN_DIR`, ...).
    public static func load(servicesDirectory: String, environment: [String: String]) throws -> StackServices {
        guard let homePath = environment["AUTOMATE_HOME"] else {
            throw DeploymentError.configuration("AUTOMATE_HOME is not set (start the deployment-service with automate-supervisor)")
        }
        let home = AutomateHome(path: homePath)
        return try StackServices(set: ManifestLoader.load(servicesDirectory: servicesDirectory, home: home), home: home, environment: environment, texts: [:])
    }

    /// The same stack with some services described by other manifests (texts by service name, as a
    /// backup recorded them; `source` names them in errors), replaced the way the supervisor starts a
    /// service with such a manifest (``ManifestReplacement``). Names the stack has no service for are
    /// left out (the caller decides what that means).
    public func relaunching(from replacements: [String: String], source: String) throws -> StackServices {
        var set = self.set
        var texts = self.texts
        var problems: [String] = []
        for (name, text) in replacements.sorted(by: { $0.key < $1.key }) where set.manifest(named: name) != nil {
            do {
                set = try ManifestReplacement.replace(name, in: set, path: "\(source)manifests/\(name).toml", contents: text, home: home).set
                texts[name] = text
            } catch {
                problems.append("\(error)")
            }
        }
        guard problems.isEmpty else { throw DeploymentError.configuration(problems.joined(separator: "\n")) }
        return try StackServices(set: set, home: home, environment: environment, texts: texts)
    }

    private init(set: ManifestSet, home: AutomateHome, environment: [String: String], texts: [String: String]) throws {
        self.set = set
        self.home = home
        self.environment = environment
        self.texts = texts
        services = try set.startOrder.compactMap(set.manifest(named:)).map { manifest in
            let resolved = try manifest.resolved(
                in: home, binDirectory: environment["AUTOMATE_BIN_DIR"] ?? "", hooksDirectory: environment["AUTOMATE_HOOKS_DIR"] ?? "",
                runUser: environment["AUTOMATE_RUN_USER"] ?? "")
            let text = texts[manifest.name] ?? (try? String(contentsOfFile: manifest.sourcePath, encoding: .utf8)) ?? ""
            return Service(manifest: resolved, text: text, socketPath: resolved.socket.map { home.runDirectory + "/" + $0 })
        }
    }
}

/// What goes wrong in the deployment-service.
public enum DeploymentError: Error, CustomStringConvertible, Sendable {
    case configuration(String)
    public var description: String {
        switch self { case .configuration(let m): return m }
    }
}
