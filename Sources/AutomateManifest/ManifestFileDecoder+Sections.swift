import TOMLKit

extension ManifestFileDecoder {
    mutating func decodeRoot(_ root: TOMLTable, fallbackName: String) -> ManifestFileResult {
        // Unknown top-level keys and tables.
        for key in root.keys where Self.sections[key] == nil {
            let v = root[key]!
            if v.table != nil {
                var message = "unknown table [\(key)]"
                if let near = NameRules.suggestion(for: key, among: Self.sectionOrder) {
                    message += " (did you mean [\(near)]?)"
                } else {
                    message += "; known tables: " + Self.sectionOrder.map { "[\($0)]" }.joined(separator: ", ")
                }
                error([key], message)
            } else {
                var message = "unknown key \(Self.quoted(key)) at the top level"
                if let near = NameRules.suggestion(for: key, among: Self.sections["service"]!) {
                    message += " (did you mean \(Self.quoted(near)) in [service]?)"
                } else {
                    message += "; keys belong in a table such as [service]"
                }
                error([key], message)
            }
        }

        var manifest = ServiceManifest(name: fallbackName, command: [], sourcePath: file)
        var dependencyLines: [String: Int] = [:]
        var usable = true

        // [config] first: ${cfg.key} checks need its keys.
        let configTable = table(root, "config")
        if let t = configTable { manifest.config = decodeConfig(t) }
        // Keys present in [config], even those with bad values, so they are not reported twice.
        let configKeys = Set(configTable?.keys ?? [])

        let serviceTable = table(root, "service")
        if let t = serviceTable {
            checkKeys(t, section: "service")
            if let name = string(t, ["service", "name"]) {
                if !NameRules.isValidServiceName(name) {
                    error(["service", "name"], "\(Self.quoted(name)) is not a valid service name (1 to 63 of a-z, 0-9, -)")
                } else if name != fallbackName {
                    error(
                        ["service", "name"],
                        "\(Self.quoted(name)) does not match the file name; it must be \(Self.quoted(fallbackName)) (the file name without .toml)"
                    )
                }
                manifest.name = name
            } else if t["name"] == nil {
                error(["service", "name"], "missing required key \"name\"")
            }
            if !NameRules.isValidServiceName(manifest.name) { usable = false }
            manifest.dataDir = manifest.name
            if let s = string(t, ["service", "description"]) { manifest.description = s }
            if let s = string(t, ["service", "kind"]) {
                if let kind = ServiceKind(rawValue: s) {
                    manifest.kind = kind
                } else {
                    enumError(["service", "kind"], s, ServiceKind.allCases.map(\.rawValue))
                }
            }
            decodeCommand(t, into: &manifest, configKeys: configKeys)
            if let s = string(t, ["service", "user"]) {
                if NameRules.isUserName(s) {
                    manifest.user = s
                } else {
                    error(["service", "user"], "\(Self.quoted(s)) is not a valid user name")
                }
            }
            if let deps = stringArray(t, ["service", "depends_on"]) {
                for (i, dep) in deps.enumerated() {
                    let linePath = ["service", "depends_on", TOMLKeyLocator.element(i)]
                    if dep == manifest.name {
                        error(["service", "depends_on"], "\(Self.quoted(dep)) depends on itself", linePath: linePath)
                    } else if manifest.dependsOn.contains(dep) {
                        error(["service", "depends_on"], "\(Self.quoted(dep)) is listed twice", linePath: linePath)
                    } else {
                        manifest.dependsOn.append(dep)
                        dependencyLines[dep] = locator.line(of: linePath)
                    }
                }
            }
            for (key, path) in [("shared_with", \ServiceManifest.sharedWith), ("callers", \ServiceManifest.callers)] {
                guard let names = stringArray(t, ["service", key]) else { continue }
                for (i, other) in names.enumerated() {
                    let linePath = ["service", key, TOMLKeyLocator.element(i)]
                    if other == manifest.name || manifest[keyPath: path].contains(other) {
                        error(["service", key], "\(Self.quoted(other)) is \(other == manifest.name ? "this service itself" : "listed twice")", linePath: linePath)
                    } else {
                        manifest[keyPath: path].append(other)
                    }
                }
            }
            if let s = string(t, ["service", "external"]) {
                if let kind = ExternalSettings.Kind(rawValue: s) {
                    manifest.external = kind
                } else {
                    enumError(["service", "external"], s, ExternalSettings.Kind.allCases.map(\.rawValue))
                }
            }
            if let s = string(t, ["service", "socket"]) {
                if NameRules.isPlainFileName(s) {
                    manifest.socket = s
                } else {
                    error(["service", "socket"], "\(Self.quoted(s)) must be a file name inside the run dir (no \"/\")")
                }
            }
            if let s = string(t, ["service", "data_dir"]) {
                if NameRules.isPlainFileName(s) {
                    manifest.dataDir = s
                } else {
                    error(
                        ["service", "data_dir"],
                        "\(Self.quoted(s)) must be a folder name under <home>/data (no \"/\", not \".\" or \"..\")")
                }
            }
            if let s = string(t, ["service", "working_directory"]) {
                if !Self.looksAbsolute(s) {
                    error(["service", "working_directory"], "\(Self.quoted(s)) must be an absolute path")
                }
                checkVariables(s, ["service", "working_directory"], configKeys: configKeys)
                manifest.workingDirectory = s
            }
        } else if root["service"] == nil {
            diagnostics.append(
                ManifestDiagnostic(file: file, line: nil, field: "service", message: "missing required table [service]"))
        }

        if let t = table(root, "health") { decodeHealth(t, into: &manifest.health) }
        if let t = table(root, "restart") { decodeRestart(t, into: &manifest.restart) }
        if let t = table(root, "stop") { decodeStop(t, into: &manifest.stop) }
        if let t = table(root, "hooks") {
            checkKeys(t, section: "hooks")
            if let d = duration(t, ["hooks", "init_timeout"]) { manifest.hooks.initTimeout = d }
            if let d = duration(t, ["hooks", "post_stop_timeout"]) { manifest.hooks.postStopTimeout = d }
        }
        if let t = table(root, "environment") { manifest.environment = decodeEnvironment(t, configKeys: configKeys) }
        if let t = table(root, "backup") { decodeBackup(t, into: &manifest.backup, configKeys: configKeys) }

        return ManifestFileResult(
            manifest: manifest, diagnostics: diagnostics, dependencyLines: dependencyLines,
            nameLine: locator.line(of: ["service", "name"]), usable: usable)
    }

    mutating func enumError(_ path: [String], _ value: String, _ allowed: [String]) {
        var message = "\(Self.quoted(value)) is not one of \(allowed.joined(separator: ", "))"
        if let near = NameRules.suggestion(for: value, among: allowed) { message += " (did you mean \(Self.quoted(near))?)" }
        error(path, message)
    }

    mutating func decodeCommand(_ t: TOMLTable, into manifest: inout ServiceManifest, configKeys: Set<String>) {
        let path = ["service", "command"]
        guard t["command"] != nil else {
            error(path, "missing required key \"command\"")
            return
        }
        guard let command = stringArray(t, path) else { return }
        guard let program = command.first else {
            error(path, "must not be empty: give the program and its arguments")
            return
        }
        let first = path + [TOMLKeyLocator.element(0)]
        if program.isEmpty {
            error(path, "the program (first element) is empty", linePath: first)
        } else if !Self.looksAbsolute(program) && program.contains("/") {
            error(
                path, "the program \(Self.quoted(program)) must be an absolute path or a bare name looked up in PATH",
                linePath: first)
        }
        for (i, arg) in command.enumerated() {
            checkVariables(arg, path, linePath: path + [TOMLKeyLocator.element(i)], configKeys: configKeys)
        }
        manifest.command = command
    }

    mutating func decodeHealth(_ t: TOMLTable, into health: inout HealthCheckSpec) {
        checkKeys(t, section: "health")
        if let s = string(t, ["health", "hook"]) {
            if NameRules.isPlainFileName(s) {
                health.hook = s
            } else {
                error(["health", "hook"], "\(Self.quoted(s)) must be a file name in hooks/<service>/ (no \"/\")")
            }
        }
        if let d = duration(t, ["health", "interval"]) { health.interval = d }
        if let d = duration(t, ["health", "timeout"]) { health.timeout = d }
        if let d = duration(t, ["health", "grace"]) { health.grace = d }
        if let d = duration(t, ["health", "watchdog"]) { health.watchdog = d }
    }

    mutating func decodeRestart(_ t: TOMLTable, into restart: inout RestartSpec) {
        checkKeys(t, section: "restart")
        if let s = string(t, ["restart", "policy"]) {
            if let p = RestartPolicy(rawValue: s) {
                restart.policy = p
            } else {
                enumError(["restart", "policy"], s, RestartPolicy.allCases.map(\.rawValue))
            }
        }
        let base = duration(t, ["restart", "backoff_base"])
        if let base { restart.backoffBase = base }
        if let max = duration(t, ["restart", "backoff_max"]) {
            if max < restart.backoffBase {
                error(
                    ["restart", "backoff_max"],
                    "\"\(ManifestDuration.format(max))\" must be at least backoff_base (\"\(ManifestDuration.format(restart.backoffBase))\")"
                )
            } else {
                restart.backoffMax = max
            }
        } else if base != nil && restart.backoffMax < restart.backoffBase && t["backoff_max"] == nil {
            error(
                ["restart", "backoff_base"],
                "\"\(ManifestDuration.format(restart.backoffBase))\" is more than the default backoff_max (\"\(ManifestDuration.format(restart.backoffMax))\"); set backoff_max too"
            )
        }
        if let n = int(t, ["restart", "crash_loop_limit"]) {
            if n >= 1 {
                restart.crashLoopLimit = n
            } else {
                error(["restart", "crash_loop_limit"], "\(n) must be at least 1")
            }
        }
        if let d = duration(t, ["restart", "crash_loop_window"]) { restart.crashLoopWindow = d }
        if let d = duration(t, ["restart", "reset_after"]) { restart.resetAfter = d }
    }

    mutating func decodeStop(_ t: TOMLTable, into stop: inout StopSpec) {
        checkKeys(t, section: "stop")
        if let s = string(t, ["stop", "signal"]) {
            if let (name, number) = StopSignal.lookup(s) {
                stop.signalName = name
                stop.signal = number
            } else {
                error(
                    ["stop", "signal"],
                    "\(Self.quoted(s)) is not a supported signal; use one of "
                        + StopSignal.supported.map(\.name).joined(separator: ", "))
            }
        }
        if let d = duration(t, ["stop", "timeout"]) { stop.timeout = d }
    }

    mutating func decodeEnvironment(_ t: TOMLTable, configKeys: Set<String>) -> [String: String] {
        var env: [String: String] = [:]
        for key in t.keys {
            let path = ["environment", key]
            if !NameRules.isEnvironmentName(key) {
                error(path, "\(Self.quoted(key)) is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
                continue
            }
            if VariableExpander.builtinVariables.contains(key) || key.hasPrefix("AUTOMATE_CFG_") {
                error(path, "\(Self.quoted(key)) is set by the supervisor and cannot be overridden here")
                continue
            }
            guard let value = string(t, path) else { continue }
            checkVariables(value, path, configKeys: configKeys)
            env[key] = value
        }
        return env
    }

    mutating func decodeConfig(_ t: TOMLTable) -> [String: ConfigValue] {
        var config: [String: ConfigValue] = [:]
        var envNames: [String: String] = [:]
        for key in t.keys.sorted() {
            let path = ["config", key]
            if !NameRules.isEnvironmentName(key) {
                error(
                    path,
                    "\(Self.quoted(key)) is not a valid config key: it becomes AUTOMATE_CFG_<KEY>, so use letters, digits and \"_\""
                )
                continue
            }
            let envName = ServiceManifest.configEnvironmentName(key)
            if let other = envNames[envName] {
                error(path, "\(Self.quoted(key)) and \(Self.quoted(other)) both become \(envName)")
                continue
            }
            envNames[envName] = key
            let v = t[key]!
            if let value = Self.configValue(v) {
                config[key] = value
            } else {
                error(path, "expected a string, integer, boolean or float, found \(Self.typeName(v))")
            }
        }
        return config
    }

    static func configValue(_ v: TOMLValueConvertible) -> ConfigValue? {
        switch v.type {
        case .string: return v.string.map(ConfigValue.string)
        case .int: return v.int.map(ConfigValue.integer)
        case .bool: return v.bool.map(ConfigValue.boolean)
        case .double: return v.double.map(ConfigValue.double)
        default: return nil
        }
    }

    mutating func decodeBackup(_ t: TOMLTable, into backup: inout BackupSpec, configKeys: Set<String>) {
        checkKeys(t, section: "backup")
        if let b = bool(t, ["backup", "contract"]) { backup.contract = b }
        if let b = bool(t, ["backup", "gateway"]) { backup.gateway = b }
        if let b = bool(t, ["backup", "cluster"]) { backup.cluster = b }
        for key in ["databases", "indices"] {
            let path = ["backup", key]
            guard let names = stringArray(t, path) else { continue }
            for (i, n) in names.enumerated() where n.isEmpty || n.contains("/") {
                error(path, "\(Self.quoted(n)) is not a valid name", linePath: path + [TOMLKeyLocator.element(i)])
            }
            if key == "databases" { backup.databases = names } else { backup.indices = names }
        }
        let path = ["backup", "paths"]
        if let paths = stringArray(t, path) {
            for (i, p) in paths.enumerated() {
                let linePath = path + [TOMLKeyLocator.element(i)]
                if !Self.looksAbsolute(p) {
                    error(path, "\(Self.quoted(p)) must be an absolute path", linePath: linePath)
                }
                checkVariables(p, path, linePath: linePath, configKeys: configKeys)
            }
            backup.paths = paths
        }
    }
}
