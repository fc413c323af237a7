import AutomateManifest
import Foundation

/// Loads the stack's manifests and applies each service's config overlay from `<home>/config/`, then the
/// external servers of `<home>/config/external.toml`.
public enum ManifestLoader {
    /// Every manifest of `servicesDirectory`, validated, with overlays applied and external servers in
    /// place of the services they stand in for (``ExternalSettings``). Throws
    /// ``AutomateManifest/ManifestErrors`` naming every problem.
    public static func load(servicesDirectory: String, home: AutomateHome) throws -> ManifestSet {
        let set = try ManifestSet.load(directory: servicesDirectory)
        var diagnostics: [ManifestDiagnostic] = []
        var overlaid: [ServiceManifest] = []
        for manifest in set.services {
            do {
                overlaid.append(try applyingOverlay(to: manifest, home: home))
            } catch {
                diagnostics += error.diagnostics
            }
        }
        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        let result = set.replacing(overlaid)
        guard let external = try externalSettings(home: home) else { return result }
        let standIns = external.standIns(in: result)
        for kind in ExternalSettings.Kind.allCases where external.isSet(kind) && !standIns.values.contains(kind) {
            diagnostics.append(ManifestDiagnostic(
                file: external.path, line: nil, field: kind.rawValue,
                message: "[\(kind.rawValue)] is set, but no service in \(servicesDirectory) has `external = \"\(kind.rawValue)\"` in [service]"))
        }
        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        return external.applied(to: result, secretsDirectory: home.secretsDirectory)
    }

    /// The home's external servers (`<home>/config/external.toml`), nil when it has no such file.
    public static func externalSettings(home: AutomateHome) throws(ManifestErrors) -> ExternalSettings? {
        try ExternalSettings.load(path: home.externalSettingsPath)
    }

    /// `manifest`, one of `set`'s (after a replacement), pointed at the home's external servers as
    /// ``load(servicesDirectory:home:)`` does.
    public static func applyingExternalSettings(to manifest: ServiceManifest, in set: ManifestSet, home: AutomateHome) throws(ManifestErrors) -> ServiceManifest {
        guard let external = try externalSettings(home: home) else { return manifest }
        return external.applied(to: manifest, standIns: external.standIns(in: set), secretsDirectory: home.secretsDirectory)
    }

    /// `manifest` with its service's config overlay from `<home>/config/` applied, when there is one.
    public static func applyingOverlay(to manifest: ServiceManifest, home: AutomateHome) throws(ManifestErrors) -> ServiceManifest {
        let overlay = home.configOverlayPath(service: manifest.name)
        guard let contents = try TOMLSource.read(path: overlay) else { return manifest }
        return try manifest.applyingConfigOverlay(path: overlay, contents: contents)
    }
}
