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
    ///
    /// With `replacing` (manifest texts by service name, as a backup recorded them; `source` names them in
    /// errors), those services are described by those manifests instead, the way the supervisor starts a
    /// service with such a manifest: it must be valid, declare the same service and depend on services of
    /// the stack; command, user and kind stay the stack's own (``ManifestReplacement``). Names the stack has
    /// no service for are left out (the caller decides what that means).
    public static func load(servicesDirectory: String, environment: [String: String], replacing texts: [String: String] = [:],
                            source: String = "") throws -> StackServices {
        guard let homePath = environment["AUTOMATE_HOME"] else {
            throw DeploymentError.configuration("AUTOMATE_HOME is not set (start the deployment-service with automate-supervisor)")
        }
        let home = AutomateHome(path: homePath)
        var set = try ManifestLoader.load(servicesDirectory: servicesDirectory, home: home)
        var replacedTexts: [String: String] = [:]
        var problems: [String] = []
        for (name, text) in texts.sorted(by: { $0.key < $1.key }) {
            guard let current = set.manifest(named: name) else { continue }
            let path = "\(source)manifests/\(name).toml"
            do {
                let replaced = try set.replacing(service: name, path: path, contents: text)
                let next = ManifestReplacement.adopting(try ManifestLoader.applyingOverlay(to: replaced.manifest, home: home), over: current)
                set = replaced.set.replacing([next])
                replacedTexts[name] = text
            } catch {
                problems.append("\(error)")
            }
        }
        guard problems.isEmpty else { throw DeploymentError.configuration(problems.joined(separator: "\n")) }
        var services: [Service] = []
        for manifest in set.startOrder.compactMap(set.manifest(named:)) {
            let resolved = try manifest.resolved(
                in: home, binDirectory: environment["AUTOMATE_BIN_DIR"] ?? "", hooksDirectory: environment["AUTOMATE_HOOKS_DIR"] ?? "",
                runUser: environment["AUTOMATE_RUN_USER"] ?? "")
            let text = replacedTexts[manifest.name] ?? (try? String(contentsOfFile: manifest.sourcePath, encoding: .utf8)) ?? ""
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
