import Foundation

/// Every service manifest of a stack, validated together, with the dependency order.
///
/// Loading collects all problems across all files before failing, so one run reports everything that
/// is wrong; nothing may start while any manifest is invalid.
public struct ManifestSet: Sendable {
    /// The services, sorted by name.
    public let services: [ServiceManifest]
    /// Service names in start order: dependencies first, ties broken by name, so the order is deterministic.
    public let startOrder: [String]
    private let index: [String: Int]

    init(services: [ServiceManifest]) {
        let sorted = services.sorted { $0.name < $1.name }
        self.services = sorted
        var index: [String: Int] = [:]
        for (i, s) in sorted.enumerated() { index[s.name] = i }
        self.index = index
        self.startOrder = DependencyGraph(services: sorted).topologicalOrder()
    }

    /// Loads every `*.toml` file directly in `directory` (not recursive; hidden files are skipped).
    ///
    /// Files are named `<directory>/<file>` in diagnostics, so `load(directory: "services")` reports
    /// `services/teams-service.toml:7: ...`.
    /// - Throws: ``ManifestErrors`` with every problem found; a missing, unreadable or empty folder is
    ///   an error naming it.
    public static func load(directory: String) throws(ManifestErrors) -> ManifestSet {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ManifestErrors(diagnostics: [
                ManifestDiagnostic(file: directory, line: nil, field: nil, message: "no such directory")
            ])
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ManifestErrors(diagnostics: [
                ManifestDiagnostic(file: directory, line: nil, field: nil, message: "cannot list the folder: \(error)")
            ])
        }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        var files: [(path: String, contents: String)] = []
        var diagnostics: [ManifestDiagnostic] = []
        for name in names.sorted() where name.hasSuffix(".toml") && !name.hasPrefix(".") {
            let path = prefix + name
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { continue }
            guard let data = FileManager.default.contents(atPath: path) else {
                diagnostics.append(ManifestDiagnostic(file: path, line: nil, field: nil, message: "cannot read the file"))
                continue
            }
            guard let text = String(data: data, encoding: .utf8) else {
                diagnostics.append(ManifestDiagnostic(file: path, line: nil, field: nil, message: "not valid UTF-8"))
                continue
            }
            files.append((path, text))
        }
        if files.isEmpty && diagnostics.isEmpty {
            throw ManifestErrors(diagnostics: [
                ManifestDiagnostic(file: directory, line: nil, field: nil, message: "no service manifests (*.toml) in this folder")
            ])
        }
        let parsed = Result { () throws(ManifestErrors) -> ManifestSet in try parse(files: files) }
        switch parsed {
        case .success(let set) where diagnostics.isEmpty: return set
        case .success: throw ManifestErrors(diagnostics: diagnostics)
        case .failure(let error): throw ManifestErrors(diagnostics: diagnostics + error.diagnostics)
        }
    }

    /// Parses and validates manifests given as text (for tests and reload). `path` names the file in
    /// diagnostics; its base name without `.toml` is the expected service name, and its folder is where
    /// dependencies must have manifests.
    /// - Throws: ``ManifestErrors`` with every problem found in all files.
    public static func parse(files: [(path: String, contents: String)]) throws(ManifestErrors) -> ManifestSet {
        let results = files.map { ManifestFileDecoder.decode(file: $0.path, contents: $0.contents) }
        var diagnostics = results.flatMap(\.diagnostics)

        // Duplicate names.
        var firstFile: [String: String] = [:]
        var unique: [ManifestFileResult] = []
        for r in results where r.usable {
            let name = r.manifest.name
            if let other = firstFile[name] {
                diagnostics.append(
                    ManifestDiagnostic(
                        file: r.manifest.sourcePath, line: r.nameLine, field: "service.name",
                        message: "duplicate service name \"\(name)\" (also declared in \(other))"))
            } else {
                firstFile[name] = r.manifest.sourcePath
                unique.append(r)
            }
        }

        // Unknown dependencies: a manifest exists for a name when a file is named after it.
        let existing = Set(files.map { ManifestFileDecoder.baseName(of: $0.path) }).union(firstFile.keys)
        for r in results {
            for dep in r.manifest.dependsOn where !existing.contains(dep) {
                diagnostics.append(
                    ManifestDiagnostic(
                        file: r.manifest.sourcePath, line: r.dependencyLines[dep], field: "service.depends_on",
                        message:
                            "depends_on names \"\(dep)\", which has no manifest in \(ManifestFileDecoder.directory(of: r.manifest.sourcePath))"
                    ))
            }
        }

        // Cycles.
        let graph = DependencyGraph(services: unique.map(\.manifest))
        let lines = Dictionary(uniqueKeysWithValues: unique.map { ($0.manifest.name, $0.dependencyLines) })
        for cycle in graph.cycles() {
            let start = cycle[0]
            let manifest = unique.first { $0.manifest.name == start }!.manifest
            diagnostics.append(
                ManifestDiagnostic(
                    file: manifest.sourcePath, line: lines[start]?[cycle[1]], field: "service.depends_on",
                    message: "dependency cycle: " + cycle.joined(separator: " -> ")))
        }

        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        return ManifestSet(services: results.map(\.manifest))
    }

    /// The manifest of `named`, if there is one.
    public func manifest(named: String) -> ServiceManifest? {
        index[named].map { services[$0] }
    }

    /// Every service that depends on `name`, directly or through others, in start order (so stopping them
    /// in reverse order is safe). Empty for an unknown name.
    public func dependents(of name: String) -> [String] {
        var found: Set<String> = []
        var queue = [name]
        while let current = queue.popLast() {
            for s in services where s.dependsOn.contains(current) && !found.contains(s.name) {
                found.insert(s.name)
                queue.append(s.name)
            }
        }
        return startOrder.filter { found.contains($0) }
    }

    /// `names` and everything they depend on, directly or through others, in start order.
    public func withDependencies(of names: [String]) -> [String] {
        let wanted = Set(names + names.flatMap { dependencies(of: $0) })
        return startOrder.filter { wanted.contains($0) }
    }

    /// Every service `name` depends on, directly or through others, in start order. Empty for an unknown name.
    public func dependencies(of name: String) -> [String] {
        var found: Set<String> = []
        var queue = [name]
        while let current = queue.popLast() {
            for dep in manifest(named: current)?.dependsOn ?? [] where !found.contains(dep) {
                found.insert(dep)
                queue.append(dep)
            }
        }
        return startOrder.filter { found.contains($0) }
    }
}
