import AutomateManifest
import Foundation
import Testing

/// The repository's own `services/` folder must always load cleanly (skipped while it holds no manifest).
@Suite struct RepositoryManifestTests {
    static var servicesFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("services").path
    }

    static var hasManifests: Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: servicesFolder)) ?? []).contains { $0.hasSuffix(".toml") }
    }

    @Test(.enabled(if: hasManifests)) func repositoryServicesAreValid() throws {
        do {
            let set = try ManifestSet.load(directory: Self.servicesFolder)
            #expect(!set.startOrder.isEmpty)
        } catch {
            Issue.record("services/ does not validate:\n\(error)")
        }
    }
}
