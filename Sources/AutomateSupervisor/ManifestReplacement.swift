import AutomateManifest

/// How a manifest recorded elsewhere (in a backup) takes the place of the stack's own when a service is
/// started with it: its settings (environment, config, dependencies, health, restart, the data it owns)
/// are the recorded ones; what runs and as whom (command, user, kind) stay the stack's own, so a backup
/// never chooses a program or an identity.
public enum ManifestReplacement {
    /// `recorded` with `current`'s command, user and kind.
    public static func adopting(_ recorded: ServiceManifest, over current: ServiceManifest) -> ServiceManifest {
        var next = recorded
        next.command = current.command
        next.user = current.user
        next.kind = current.kind
        return next
    }
}
