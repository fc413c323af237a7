import AutomateManifest
import Foundation

/// Loads the stack's manifests and applies each service's config overlay from `<home>/config/`.
public enum ManifestLoader {
    /// Every manifest of `servicesDirectory`, validated, with overlays applied. Throws
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
        return set.replacing(overlaid)
    }

    /// `manifest` with its service's config overlay from `<home>/config/` applied, when there is one.
    public static func applyingOverlay(to manifest: ServiceManifest, home: AutomateHome) throws(ManifestErrors) -> ServiceManifest {
        let overlay = home.configOverlayPath(service: manifest.name)
        guard FileManager.default.fileExists(atPath: overlay) else { return manifest }
        let contents: String
        do {
            contents = try String(contentsOfFile: overlay, encoding: .utf8)
        } catch {
            throw ManifestErrors(diagnostics: [ManifestDiagnostic(file: overlay, line: nil, field: nil, message: "\(error)")])
        }
        return try manifest.applyingConfigOverlay(path: overlay, contents: contents)
    }
}
