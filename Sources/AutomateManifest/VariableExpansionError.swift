/// Why a `${...}` expansion failed.
public struct VariableExpansionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The variable that was not known (`AUTOMATE_HOME`, `cfg.port`), nil for a syntax error.
    public let variable: String?
    /// What is wrong, for example `unknown variable ${FOO}`.
    public let message: String

    /// Creates an error.
    public init(variable: String?, message: String) {
        self.variable = variable
        self.message = message
    }

    /// The message.
    public var description: String { message }
}
