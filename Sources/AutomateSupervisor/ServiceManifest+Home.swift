import AutomateManifest

extension ServiceManifest {
    /// The built-in variables (`AUTOMATE_HOME`, `AUTOMATE_RUN_DIR`, ...) of this service in `home`.
    public func builtinVariables(
        in home: AutomateHome, binDirectory: String, hooksDirectory: String, runUser: String
    ) -> [String: String] {
        builtinVariables(
            home: home.path, runDir: home.runDirectory, dataRoot: home.dataDirectory, logDir: home.logDirectory,
            binDir: binDirectory, hooksDir: hooksDirectory, runUser: runUser)
    }

    /// This manifest with every variable expanded as the supervisor expands it for `home` (what the
    /// service runs with): the supervisor, the deployment-service and the CLI read a manifest the same way.
    /// - Throws: the manifest's diagnostics when a variable does not expand.
    public func resolved(
        in home: AutomateHome, binDirectory: String, hooksDirectory: String, runUser: String
    ) throws -> ServiceManifest {
        let variables = builtinVariables(in: home, binDirectory: binDirectory, hooksDirectory: hooksDirectory, runUser: runUser)
        return try resolved(using: VariableExpander(variables: variables, config: config))
    }
}
