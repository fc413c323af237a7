/// Every problem found while loading manifests; nothing may start while there is any.
public struct ManifestErrors: Error, Sendable, CustomStringConvertible {
    /// The problems, sorted by file, then line (problems without a line first), then discovery order.
    public let diagnostics: [ManifestDiagnostic]

    /// Creates the error, sorting the diagnostics.
    public init(diagnostics: [ManifestDiagnostic]) {
        self.diagnostics = diagnostics.enumerated().sorted { a, b in
            if a.element.file != b.element.file { return a.element.file < b.element.file }
            let la = a.element.line ?? 0, lb = b.element.line ?? 0
            if la != lb { return la < lb }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// One line per diagnostic.
    public var description: String {
        diagnostics.map(\.description).joined(separator: "\n")
    }
}
