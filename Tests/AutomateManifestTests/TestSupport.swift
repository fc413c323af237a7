import AutomateManifest
import Testing

/// Parses `files` (paths relative to `services/`) and returns the rendered diagnostics, or [] when valid.
func diagnostics(_ files: [(String, String)]) -> [String] {
    do {
        _ = try ManifestSet.parse(files: files.map { (path: "services/" + $0.0, contents: $0.1) })
        return []
    } catch {
        return error.diagnostics.map(\.description)
    }
}

/// The rendered diagnostics of one file `services/<name>.toml`.
func diagnostics(name: String, _ contents: String) -> [String] {
    diagnostics([(name + ".toml", contents)])
}

/// Parses one valid file and returns its manifest.
func manifest(name: String, _ contents: String) throws -> ServiceManifest {
    let set = try ManifestSet.parse(files: [(path: "services/\(name).toml", contents: contents)])
    return try #require(set.manifest(named: name))
}

/// A minimal valid manifest body for `name`.
func minimal(_ name: String, dependsOn: [String] = []) -> String {
    let deps = dependsOn.map { "\"\($0)\"" }.joined(separator: ", ")
    return """
        [service]
        name = "\(name)"
        command = ["/bin/true"]
        depends_on = [\(deps)]

        """
}
