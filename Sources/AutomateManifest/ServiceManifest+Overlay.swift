import TOMLKit

extension ServiceManifest {
    /// Applies a user overlay file (`<home>/config/<service>.toml`, only a `[config]` table whose keys must
    /// already exist in the manifest, same types) — Habitat's user.toml.
    ///
    /// An integer may stand for a float key (`5` for `5.0`); every other type must match. An empty file
    /// changes nothing.
    /// - Throws: ``ManifestErrors`` naming the overlay file, line and key of every problem.
    public func applyingConfigOverlay(path: String, contents: String) throws(ManifestErrors) -> ServiceManifest {
        let root = try TOMLSource.table(path: path, contents: contents)
        let locator = TOMLKeyLocator(text: contents)
        var diagnostics: [ManifestDiagnostic] = []
        func report(_ keyPath: [String], _ message: String) {
            diagnostics.append(
                ManifestDiagnostic(
                    file: path, line: locator.line(of: keyPath), field: ManifestFileDecoder.fieldName(keyPath),
                    message: message))
        }

        var result = self
        for key in root.keys where key != "config" {
            let kind = root[key]!.table != nil ? "table [\(key)]" : "key \"\(key)\""
            report([key], "unknown \(kind): a config overlay may only hold a [config] table")
        }
        if let value = root["config"] {
            if let table = value.table {
                for key in table.keys {
                    let v = table[key]!
                    guard let existing = config[key] else {
                        var message = "unknown config key \"\(key)\": the manifest of \(name) (\(sourcePath)) has no such key"
                        if let near = NameRules.suggestion(for: key, among: config.keys.sorted()) {
                            message += " (did you mean \"\(near)\"?)"
                        }
                        report(["config", key], message)
                        continue
                    }
                    guard let new = ManifestFileDecoder.configValue(v) else {
                        report(["config", key], "expected \(existing.typeName) (as in the manifest), found \(ManifestFileDecoder.typeName(v))")
                        continue
                    }
                    switch (existing, new) {
                    case (.string, .string), (.integer, .integer), (.boolean, .boolean), (.double, .double):
                        result.config[key] = new
                    case (.double, .integer(let i)):
                        result.config[key] = .double(Double(i))
                    default:
                        report(["config", key], "expected \(existing.typeName) (as in the manifest), found \(new.typeName)")
                    }
                }
            } else {
                report(["config"], "expected a table, found \(ManifestFileDecoder.typeName(value))")
            }
        }
        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        return result
    }
}
