/// One problem found in a manifest (or config overlay) file.
///
/// Rendered as `file:line: field: message`, for example
/// `services/teams-service.toml:7: restart.policy: "sometimes" is not one of always, on-failure, never`.
/// The line and the field are left out when unknown.
public struct ManifestDiagnostic: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file, as given to the loader (`services/teams-service.toml`).
    public let file: String
    /// The 1-based line, when known.
    public let line: Int?
    /// The field as a dotted path (`restart.policy`), when the problem is about one field.
    public let field: String?
    /// What is wrong.
    public let message: String

    /// Creates a diagnostic.
    public init(file: String, line: Int?, field: String?, message: String) {
        self.file = file
        self.line = line
        self.field = field
        self.message = message
    }

    /// `file:line: field: message`.
    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let field { s += "\(field): " }
        return s + message
    }
}
