import AutomateManifest
import Testing

/// `ManifestSet.replacing(service:path:contents:)`: one manifest of a set replaced by a text recorded
/// elsewhere (a backup's), validated against the rest of the set.
@Suite struct ReplacingTests {
    let set: ManifestSet

    init() throws {
        set = try ManifestSet.parse(files: [
            (path: "services/db.toml", contents: minimal("db")),
            (path: "services/api.toml", contents: minimal("api", dependsOn: ["db"])),
            (path: "services/web.toml", contents: minimal("web", dependsOn: ["api"])),
        ])
    }

    func problems(_ service: String, _ contents: String) -> [String] {
        do {
            _ = try set.replacing(service: service, path: "backup 1: manifests/\(service).toml", contents: contents)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    @Test func replacesOnlyTheNamedServiceAndKeepsTheOrder() throws {
        let text = minimal("api", dependsOn: ["db"]) + "\n[environment]\nMARK = \"backup\"\n"
        let replaced = try set.replacing(service: "api", path: "backup 1: manifests/api.toml", contents: text)
        #expect(replaced.manifest.environment["MARK"] == "backup")
        #expect(replaced.manifest.sourcePath == "backup 1: manifests/api.toml")
        #expect(replaced.set.manifest(named: "api")?.environment["MARK"] == "backup")
        #expect(replaced.set.manifest(named: "db") == set.manifest(named: "db"))
        #expect(replaced.set.startOrder == ["db", "api", "web"])
    }

    @Test func anotherServiceNameIsRefusedNamingBoth() {
        let p = problems("api", minimal("web", dependsOn: ["db"]))
        #expect(p.count == 1 && p[0].contains("service.name") && p[0].contains("\"web\"") && p[0].contains("\"api\""), "\(p)")
        let q = (try? set.replacing(service: "api", path: "recorded.toml", contents: minimal("web", dependsOn: ["db"]))) == nil
        #expect(q)
    }

    @Test func anUnknownDependencyIsRefusedWithItsLine() {
        let p = problems("api", minimal("api", dependsOn: ["db", "cache"]))
        #expect(p.count == 1 && p[0].hasPrefix("backup 1: manifests/api.toml:4") && p[0].contains("\"cache\""), "\(p)")
    }

    @Test func aCycleThroughTheReplacementIsRefused() {
        let p = problems("db", minimal("db", dependsOn: ["web"]))
        #expect(p.contains { $0.contains("dependency cycle") }, "\(p)")
    }

    @Test func invalidTOMLAndUnknownServicesAreRefused() {
        #expect(problems("api", "[service\nname = ").first?.contains("TOML syntax error") == true)
        #expect(problems("cache", minimal("cache")).first?.contains("this stack has no service \"cache\"") == true)
    }
}
