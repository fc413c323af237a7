import Foundation
import TOMLKit

/// The outcome of decoding one manifest file: a best-effort manifest (defaults where a field was bad)
/// and every problem found. Cross-file checks (dependencies, duplicates) happen in ``ManifestSet``.
struct ManifestFileResult {
    var manifest: ServiceManifest
    var diagnostics: [ManifestDiagnostic]
    /// The line of each `depends_on` entry, by dependency name.
    var dependencyLines: [String: Int]
    /// The line of `[service] name` (or of the header, or nil).
    var nameLine: Int?
    /// False when the file could not be parsed as TOML at all, or has no usable name.
    var usable: Bool
}

/// Decodes and validates one manifest file, collecting every problem with file, line and field.
struct ManifestFileDecoder {
    static let sections: [String: [String]] = [
        "service": [
            "name", "description", "command", "user", "depends_on", "socket", "data_dir", "working_directory",
            "kind", "shared_with", "callers", "external",
        ],
        "health": ["hook", "interval", "timeout", "grace", "watchdog"],
        "restart": ["policy", "backoff_base", "backoff_max", "crash_loop_limit", "crash_loop_window", "reset_after"],
        "stop": ["signal", "timeout"],
        "hooks": ["init_timeout", "post_stop_timeout"],
        "environment": [],
        "config": [],
        "backup": ["contract", "databases", "indices", "paths", "gateway", "cluster"],
    ]
    /// Table order in messages.
    static let sectionOrder = ["service", "health", "restart", "stop", "hooks", "environment", "config", "backup"]

    let file: String
    let locator: TOMLKeyLocator
    var diagnostics: [ManifestDiagnostic] = []

    /// The file name without folder and `.toml`.
    static func baseName(of path: String) -> String {
        let last = path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
        return last.hasSuffix(".toml") ? String(last.dropLast(5)) : last
    }

    /// The folder part of `path` with a trailing `/` (`services/`), or `./`.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "./" }
        return String(path[...slash])
    }

    // MARK: entry point

    static func decode(file: String, contents: String) -> ManifestFileResult {
        let fallbackName = baseName(of: file)
        let placeholder = ServiceManifest(name: fallbackName, command: [], sourcePath: file)
        let root: TOMLTable
        switch TOMLSource.parse(path: file, contents: contents) {
        case .success(let table):
            root = table
        case .failure(let d):
            return ManifestFileResult(manifest: placeholder, diagnostics: [d], dependencyLines: [:], nameLine: nil, usable: false)
        }
        var decoder = ManifestFileDecoder(file: file, locator: TOMLKeyLocator(text: contents))
        return decoder.decodeRoot(root, fallbackName: fallbackName)
    }

    // MARK: diagnostics helpers

    static func fieldName(_ path: [String]) -> String {
        var s = ""
        for part in path {
            if part.hasPrefix("[") || s.isEmpty { s += part } else { s += "." + part }
        }
        return s
    }

    mutating func error(_ path: [String], _ message: String, linePath: [String]? = nil) {
        diagnostics.append(
            ManifestDiagnostic(
                file: file, line: locator.line(of: linePath ?? path), field: path.isEmpty ? nil : Self.fieldName(path),
                message: message))
    }

    static func typeName(_ v: TOMLValueConvertible) -> String {
        switch v.type {
        case .table: return "table"
        case .array: return "array"
        case .string: return "string"
        case .int: return "integer"
        case .double: return "float"
        case .bool: return "boolean"
        case .date: return "date"
        case .time: return "time"
        case .dateTime: return "date-time"
        }
    }

    static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    // MARK: typed accessors

    mutating func string(_ t: TOMLTable, _ path: [String]) -> String? {
        guard let v = t[path.last!] else { return nil }
        guard let s = v.string else {
            error(path, "expected a string, found \(Self.typeName(v))")
            return nil
        }
        return s
    }

    mutating func bool(_ t: TOMLTable, _ path: [String]) -> Bool? {
        guard let v = t[path.last!] else { return nil }
        guard let b = v.bool else {
            error(path, "expected a boolean, found \(Self.typeName(v))")
            return nil
        }
        return b
    }

    mutating func int(_ t: TOMLTable, _ path: [String]) -> Int? {
        guard let v = t[path.last!] else { return nil }
        guard let i = v.int else {
            error(path, "expected an integer, found \(Self.typeName(v))")
            return nil
        }
        return i
    }

    /// An array of strings; elements of the wrong type are reported at their own line.
    mutating func stringArray(_ t: TOMLTable, _ path: [String]) -> [String]? {
        guard let v = t[path.last!] else { return nil }
        guard let array = v.array else {
            error(path, "expected an array of strings, found \(Self.typeName(v))")
            return nil
        }
        var out: [String] = []
        var ok = true
        for (i, element) in array.enumerated() {
            if let s = element.string {
                out.append(s)
            } else {
                ok = false
                error(
                    path, "expected an array of strings, found \(Self.typeName(element)) at index \(i)",
                    linePath: path + [TOMLKeyLocator.element(i)])
            }
        }
        return ok ? out : nil
    }

    mutating func duration(_ t: TOMLTable, _ path: [String]) -> Duration? {
        guard let v = t[path.last!] else { return nil }
        guard let s = v.string else {
            error(path, "expected a duration string such as \"5s\", found \(Self.typeName(v))")
            return nil
        }
        guard let d = ManifestDuration.parse(s) else {
            error(path, "\(Self.quoted(s)) is not a duration; write an integer and a unit: \"250ms\", \"5s\", \"2m\", \"1h\"")
            return nil
        }
        guard d > .zero else {
            error(path, "\(Self.quoted(s)) must be greater than 0")
            return nil
        }
        return d
    }

    mutating func table(_ root: TOMLTable, _ name: String) -> TOMLTable? {
        guard let v = root[name] else { return nil }
        guard let t = v.table else {
            error([name], "expected a table, found \(Self.typeName(v))")
            return nil
        }
        return t
    }

    mutating func checkKeys(_ t: TOMLTable, section: String) {
        let known = Self.sections[section] ?? []
        for key in t.keys where !known.contains(key) {
            var message = "unknown key \(Self.quoted(key)) in [\(section)]"
            if Self.sections[key] != nil {
                message += " (the [\(key)] table needs its own [\(key)] header)"
            } else if let near = NameRules.suggestion(for: key, among: known) {
                message += " (did you mean \(Self.quoted(near))?)"
            } else {
                message += "; known keys: " + known.joined(separator: ", ")
            }
            error([section, key], message)
        }
    }

    mutating func checkVariables(_ s: String, _ path: [String], linePath: [String]? = nil, configKeys: Set<String>) {
        do {
            try VariableExpander.check(s, configKeys: configKeys)
        } catch {
            self.error(path, error.message, linePath: linePath)
        }
    }

    /// A path that must be absolute after expansion: it starts with `/` or with a variable.
    static func looksAbsolute(_ s: String) -> Bool { s.hasPrefix("/") || s.hasPrefix("${") }
}
