import AutomateManifest
import AutomateSupervisor
import Foundation

/// Where this installation keeps its executables, manifests, hooks and Python tools.
///
/// Installed (`scripts/install.sh`): `<prefix>/bin`, `<prefix>/services`, `<prefix>/hooks`,
/// `<prefix>/venv/bin`, with prefix `/opt/automate` for root and `~/.local/opt/automate` otherwise.
/// From a source tree (`.build/debug/automate`): the tree's `services/` and `hooks/`, and the default
/// prefix's `venv/bin` for tools. `AUTOMATE_SERVICES_DIR`, `AUTOMATE_HOOKS_DIR`, `AUTOMATE_TOOLS_DIR`
/// (colon-separated) and `AUTOMATE_PREFIX` override each part.
public struct StackLocation: Sendable {
    public var binDirectory: String
    public var servicesDirectory: String
    public var hooksDirectory: String
    public var toolsDirectories: [String]

    /// Finds the parts for the running executable.
    public static func discover(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> StackLocation {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let binDirectory = (executable as NSString).deletingLastPathComponent
        let fm = FileManager.default
        var root: String? = nil
        let prefixCandidate = (binDirectory as NSString).deletingLastPathComponent
        if fm.fileExists(atPath: prefixCandidate + "/services") {
            root = prefixCandidate
        } else {
            var directory = binDirectory
            while directory != "/" && !directory.isEmpty {
                if fm.fileExists(atPath: directory + "/Package.swift") && fm.fileExists(atPath: directory + "/services") {
                    root = directory
                    break
                }
                directory = (directory as NSString).deletingLastPathComponent
            }
        }
        let services = environment["AUTOMATE_SERVICES_DIR"] ?? root.map { $0 + "/services" }
        let hooks = environment["AUTOMATE_HOOKS_DIR"] ?? root.map { $0 + "/hooks" }
        guard let services, let hooks else {
            throw CLIError(
                "cannot find the service manifests next to \(binDirectory); set AUTOMATE_SERVICES_DIR and AUTOMATE_HOOKS_DIR, or reinstall with scripts/install.sh")
        }
        var tools: [String] = []
        if let explicit = environment["AUTOMATE_TOOLS_DIR"] {
            tools = explicit.split(separator: ":").map(String.init)
        } else {
            for candidate in [root.map { $0 + "/venv/bin" }, defaultPrefix(environment: environment) + "/venv/bin"] {
                if let candidate, fm.fileExists(atPath: candidate), !tools.contains(candidate) { tools.append(candidate) }
            }
        }
        return StackLocation(
            binDirectory: binDirectory, servicesDirectory: services, hooksDirectory: hooks, toolsDirectories: tools)
    }

    /// `$AUTOMATE_PREFIX`, else `/opt/automate` for root, else `~/.local/opt/automate`.
    /// The stack's manifests (with `home`'s overlays); invalid ones are a CLIError (exit 2) that starts
    /// with `failure` and lists every problem.
    func manifests(home: AutomateHome, failure: String = "invalid manifests") throws -> ManifestSet {
        do {
            return try ManifestLoader.load(servicesDirectory: servicesDirectory, home: home)
        } catch {
            throw CLIError("\(failure):\n\(error)", exitCode: 2)
        }
    }

    public static func defaultPrefix(environment: [String: String]) -> String {
        if let prefix = environment["AUTOMATE_PREFIX"], !prefix.isEmpty { return prefix }
        if geteuid() == 0 { return "/opt/automate" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.local/opt/automate"
    }
}
