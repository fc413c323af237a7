import AutomateManifest

/// How a manifest recorded elsewhere (in a backup) takes the place of the stack's own when a service is
/// started with it: its settings (environment, config, dependencies, health, restart, the data it owns)
/// are the recorded ones, with the home's config overlay and external servers applied; what runs and as whom (command, user,
/// kind) stay the stack's own, so a backup never chooses a program or an identity. The supervisor (to
/// start the service) and the deployment-service (to plan a restore) both replace manifests this way.
public enum ManifestReplacement {
    /// `set` with `service` described by `contents` (a manifest file's text; `path` names it in errors),
    /// and that manifest as it now is in the set.
    /// - Throws: ``ManifestErrors``: the text does not parse or validate against the set (another service,
    ///   an unknown dependency, a cycle; see `ManifestSet.replacing(service:path:contents:)`), or the
    ///   service's overlay does not apply.
    public static func replace(
        _ service: String, in set: ManifestSet, path: String, contents: String, home: AutomateHome
    ) throws(ManifestErrors) -> (set: ManifestSet, manifest: ServiceManifest) {
        let replaced = try set.replacing(service: service, path: path, contents: contents)
        var next = try ManifestLoader.applyingExternalSettings(
            to: ManifestLoader.applyingOverlay(to: replaced.manifest, home: home), in: set, home: home)
        if let current = set.manifest(named: service) {
            next.command = current.command
            next.user = current.user
            next.kind = current.kind
        }
        return (replaced.set.replacing([next]), next)
    }
}
