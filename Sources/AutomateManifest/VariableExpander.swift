/// `${NAME}` / `${cfg.key}` expansion with a clear error for an unknown variable; `$$` escapes a dollar.
///
/// Any other `$` is an error, so a typo such as `$HOME` is caught at load time instead of being passed on
/// literally. Variables never come from the process environment: only the ones given here (the supervisor
/// gives ``builtinVariables``) and the service's `[config]` values.
public struct VariableExpander: Sendable {
    /// The variables manifests may use besides `cfg.<key>`.
    public static let builtinVariables: [String] = [
        "AUTOMATE_HOME", "AUTOMATE_RUN_DIR", "AUTOMATE_DATA_DIR", "AUTOMATE_LOG_DIR", "AUTOMATE_BIN_DIR",
        "AUTOMATE_HOOKS_DIR", "AUTOMATE_SERVICE", "AUTOMATE_SERVICE_DATA", "AUTOMATE_RUN_USER",
    ]

    /// The prefix of config references: `${cfg.port}`.
    public static let configPrefix = "cfg."

    /// Plain variables by name.
    public let variables: [String: String]
    /// Config values, reachable as `${cfg.<key>}`.
    public let config: [String: ConfigValue]

    /// Creates an expander over `variables` (for `${NAME}`) and `config` (for `${cfg.<key>}`).
    public init(variables: [String: String], config: [String: ConfigValue]) {
        self.variables = variables
        self.config = config
    }

    /// Expands every `${...}` in `s` and turns `$$` into `$`.
    /// - Throws: ``VariableExpansionError`` for an unknown variable or malformed syntax.
    public func expand(_ s: String) throws -> String {
        try expandTyped(s)
    }

    /// ``expand(_:)`` with a typed error.
    public func expandTyped(_ s: String) throws(VariableExpansionError) -> String {
        var out = ""
        for token in try Self.tokenize(s) {
            switch token {
            case .literal(let text): out += text
            case .variable(let name):
                if name.hasPrefix(Self.configPrefix) {
                    let key = String(name.dropFirst(Self.configPrefix.count))
                    guard let value = config[key] else {
                        throw Self.unknownConfigError(key: key, known: Array(config.keys))
                    }
                    out += value.description
                } else {
                    guard let value = variables[name] else {
                        throw Self.unknownVariableError(name, known: Array(variables.keys))
                    }
                    out += value
                }
            }
        }
        return out
    }

    /// The variable names `s` refers to (`AUTOMATE_HOME`, `cfg.port`), in order, without checking them.
    /// - Throws: ``VariableExpansionError`` for malformed syntax.
    public static func references(in s: String) throws(VariableExpansionError) -> [String] {
        try tokenize(s).compactMap {
            if case .variable(let name) = $0 { return name }
            return nil
        }
    }

    /// Checks that every variable in `s` is a builtin or `cfg.<key>` with `key` in `configKeys`.
    static func check(_ s: String, configKeys: Set<String>) throws(VariableExpansionError) {
        for name in try references(in: s) {
            if name.hasPrefix(configPrefix) {
                let key = String(name.dropFirst(configPrefix.count))
                if !configKeys.contains(key) { throw unknownConfigError(key: key, known: Array(configKeys)) }
            } else if !builtinVariables.contains(name) {
                throw unknownVariableError(name, known: builtinVariables)
            }
        }
    }

    static func unknownVariableError(_ name: String, known: [String]) -> VariableExpansionError {
        var message = "unknown variable ${\(name)}"
        if let near = NameRules.suggestion(for: name, among: known.sorted()) {
            message += " (did you mean ${\(near)}?)"
        } else {
            message += "; known: " + known.sorted().joined(separator: ", ") + ", cfg.<key> for keys in [config]"
        }
        return VariableExpansionError(variable: name, message: message)
    }

    static func unknownConfigError(key: String, known: [String]) -> VariableExpansionError {
        var message = "unknown variable ${cfg.\(key)}: [config] has no key \"\(key)\""
        if let near = NameRules.suggestion(for: key, among: known.sorted()) {
            message += " (did you mean ${cfg.\(near)}?)"
        }
        return VariableExpansionError(variable: configPrefix + key, message: message)
    }

    enum Token: Equatable {
        case literal(String)
        case variable(String)
    }

    static func tokenize(_ s: String) throws(VariableExpansionError) -> [Token] {
        var tokens: [Token] = []
        var literal = ""
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            guard c == "$" else {
                literal.append(c)
                i = s.index(after: i)
                continue
            }
            let next = s.index(after: i)
            if next < s.endIndex && s[next] == "$" {
                literal.append("$")
                i = s.index(after: next)
                continue
            }
            guard next < s.endIndex, s[next] == "{" else {
                throw VariableExpansionError(
                    variable: nil,
                    message: "a \"$\" must start \"${NAME}\" or be doubled as \"$$\" in \"\(s)\"")
            }
            let nameStart = s.index(after: next)
            guard let close = s[nameStart...].firstIndex(of: "}") else {
                throw VariableExpansionError(variable: nil, message: "unterminated \"${\" in \"\(s)\"")
            }
            let name = String(s[nameStart..<close])
            guard !name.isEmpty, !name.contains("$"), !name.contains("{") else {
                throw VariableExpansionError(variable: nil, message: "malformed \"${\(name)}\" in \"\(s)\"")
            }
            if !literal.isEmpty {
                tokens.append(.literal(literal))
                literal = ""
            }
            tokens.append(.variable(name))
            i = s.index(after: close)
        }
        if !literal.isEmpty { tokens.append(.literal(literal)) }
        return tokens
    }
}
