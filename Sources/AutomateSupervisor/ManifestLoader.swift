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
            let overlay = home.configOverlayPath(service: manifest.name)
            guard FileManager.default.fileExists(atPath: overlay) else {
                overlaid.append(manifest)
                continue
            }
            do {
                let contents = try String(contentsOfFile: overlay, encoding: .utf8)
                overlaid.append(try manifest.applyingConfigOverlay(path: overlay, contents: contents))
            } catch let errors as ManifestErrors {
                diagnostics += errors.diagnostics
            } catch {
                diagnostics.append(ManifestDiagnostic(file: overlay, line: nil, field: nil, message: "\(error)"))
            }
        }
        if !diagnostics.isEmpty { throw ManifestErrors(diagnostics: diagnostics) }
        return set.replacing(overlaid)
    }
}
