extension ManifestSet {
    /// The same set with some manifests replaced by name (for example after applying config overlays,
    /// which cannot change names or dependencies). Manifests whose name is not in the set are ignored.
    public func replacing(_ replacements: [ServiceManifest]) -> ManifestSet {
        let byName = Dictionary(replacements.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        return ManifestSet(services: services.map { byName[$0.name] ?? $0 })
    }
}

extension ManifestSet {
    /// The set with the manifest of `service` replaced by a manifest file's text (one recorded in a backup,
    /// say), and that manifest. The text is decoded and validated as a file of the set would be; it must
    /// declare `service`, and its dependencies must be services of the set, without a cycle.
    ///
    /// - Parameters:
    ///   - service: the service whose manifest is replaced; the set must have it.
    ///   - path: names the text in diagnostics (`backup 20261202103000: manifests/teams-service.toml`).
    ///   - contents: the manifest's TOML text.
    /// - Throws: ``ManifestErrors`` with every problem found.
    public func replacing(service: String, path: String, contents: String) throws(ManifestErrors) -> (set: ManifestSet, manifest: ServiceManifest) {
        guard manifest(named: service) != nil else {
            throw ManifestErrors(diagnostics: [ManifestDiagnostic(file: path, line: nil, field: nil, message: "this stack has no service \"\(service)\"")])
        }
        let result = ManifestFileDecoder.decode(file: path, contents: contents)
        var diagnostics = result.diagnostics
        guard result.usable else { throw ManifestErrors(diagnostics: diagnostics) }
        let replacement = result.manifest
        // The decoder already holds the name to the file's (`<service>.toml`); other paths are checked here.
        if replacement.name != service, ManifestFileDecoder.baseName(of: path) != service {
            diagnostics.append(ManifestDiagnostic(
                file: path, line: result.nameLine, field: "service.name",
                message: "declares service \"\(replacement.name)\" where \"\(service)\" was expected"))
        }
        for dep in replacement.dependsOn where manifest(named: dep) == nil {
            diagnostics.append(ManifestDiagnostic(
                file: path, line: result.dependencyLines[dep], field: "service.depends_on",
                message: "depends_on names \"\(dep)\", which this stack has no manifest for"))
        }
        let next = ManifestSet(services: services.map { $0.name == service ? replacement : $0 })
        for cycle in DependencyGraph(services: next.services).cycles() where cycle.contains(service) {
            diagnostics.append(ManifestDiagnostic(
                file: path, line: nil, field: "service.depends_on", message: "dependency cycle: " + cycle.joined(separator: " -> ")))
        }
        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        return (next, replacement)
    }
}
