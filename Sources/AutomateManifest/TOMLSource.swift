import Foundation
import TOMLKit

/// Reading the stack's TOML files (manifests, config overlays, `external.toml`) with errors that name
/// the file, and the line and column of a syntax error.
public enum TOMLSource {
    /// The text of `path`, nil when there is no such file.
    /// - Throws: ``ManifestErrors`` naming the file when it exists but cannot be read.
    public static func read(path: String) throws(ManifestErrors) -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ManifestErrors(diagnostics: [ManifestDiagnostic(file: path, line: nil, field: nil, message: "cannot read it: \(error)")])
        }
    }

    /// The root table of `contents`, or the syntax error (file, line, column).
    static func parse(path: String, contents: String) -> Result<TOMLTable, ManifestDiagnostic> {
        do {
            return .success(try TOMLTable(string: contents))
        } catch let error as TOMLParseError {
            return .failure(ManifestDiagnostic(
                file: path, line: error.source.begin.line, field: nil,
                message: "TOML syntax error at column \(error.source.begin.column): \(error.description)"))
        } catch {
            return .failure(ManifestDiagnostic(file: path, line: nil, field: nil, message: "TOML syntax error: \(error)"))
        }
    }

    /// ``parse(path:contents:)`` for callers that throw.
    static func table(path: String, contents: String) throws(ManifestErrors) -> TOMLTable {
        switch parse(path: path, contents: contents) {
        case .success(let table): return table
        case .failure(let diagnostic): throw ManifestErrors(diagnostics: [diagnostic])
        }
    }
}
