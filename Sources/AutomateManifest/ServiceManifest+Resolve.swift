extension ServiceManifest {
    /// A copy with `[config]` string values (builtin variables only, e.g. `"${AUTOMATE_HOME}/backups"`),
    /// then `command`, `environment` values, `backup.paths` and `workingDirectory` expanded (a
    /// convenience; the supervisor builds the expander, for example from ``builtinVariables(home:runDir:dataRoot:logDir:binDir:hooksDir:runUser:)``
    /// and ``config``).
    ///
    /// After expansion the program must be an absolute path or a bare name, and the working directory and
    /// backup paths must be absolute.
    /// - Throws: ``ManifestErrors`` naming ``sourcePath`` and the field of every problem.
    public func resolved(using expander: VariableExpander) throws -> ServiceManifest {
        var diagnostics: [ManifestDiagnostic] = []
        func report(_ field: String, _ message: String) {
            diagnostics.append(ManifestDiagnostic(file: sourcePath, line: nil, field: field, message: message))
        }
        var result = self
        // Config strings first, with the builtin variables only; then everything else sees them expanded.
        let builtins = VariableExpander(variables: expander.variables, config: [:])
        for (key, value) in config {
            guard case .string(let text) = value else { continue }
            do {
                result.config[key] = .string(try builtins.expandTyped(text))
            } catch {
                report("config.\(key)", error.message)
            }
        }
        let expander = VariableExpander(variables: expander.variables, config: result.config)
        func expand(_ s: String, _ field: String) -> String {
            do {
                return try expander.expandTyped(s)
            } catch {
                report(field, error.message)
                return s
            }
        }
        result.command = command.enumerated().map { expand($0.element, "service.command[\($0.offset)]") }
        if let program = result.command.first, diagnostics.isEmpty {
            if program.isEmpty || (!program.hasPrefix("/") && program.contains("/")) {
                report(
                    "service.command[0]",
                    "the program \"\(program)\" must be an absolute path or a bare name looked up in PATH")
            }
        }
        for (key, value) in environment { result.environment[key] = expand(value, "environment.\(key)") }
        result.backup.paths = backup.paths.enumerated().map {
            let field = "backup.paths[\($0.offset)]"
            let p = expand($0.element, field)
            if !p.hasPrefix("/") { report(field, "\"\(p)\" is not an absolute path") }
            return p
        }
        if let wd = workingDirectory {
            let p = expand(wd, "service.working_directory")
            if !p.hasPrefix("/") { report("service.working_directory", "\"\(p)\" is not an absolute path") }
            result.workingDirectory = p
        }
        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        return result
    }
}
