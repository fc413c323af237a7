extension ServiceManifest {
    /// The system user a service runs as when the supervisor runs as root and its manifest names none:
    /// `automate-<short name>`, the short name being the service name without a leading `automate-` and
    /// a trailing `-service` (`pg-sidecar-service` → `automate-pg-sidecar`, `automate-postgresql` →
    /// `automate-postgresql`), cut to the 32 characters useradd allows.
    public var defaultUserName: String {
        var short = Substring(name)
        if short.hasPrefix("automate-") { short = short.dropFirst("automate-".count) }
        if short.hasSuffix("-service"), short.count > "-service".count { short = short.dropLast("-service".count) }
        var user = "automate-" + short
        while user.count > 32 || user.hasSuffix("-") { user.removeLast() }
        return user
    }

    /// The user it runs as under a root supervisor: `[service] user`, else ``defaultUserName``.
    public var runUserName: String { user ?? defaultUserName }
}
