import AutomateManifest
import Foundation
import Testing

@Suite struct LoadTests {
    func makeFolder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("manifest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func loadsEveryTomlFileInTheFolder() throws {
        let dir = try makeFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try minimal("a").write(toFile: dir + "/a.toml", atomically: true, encoding: .utf8)
        try minimal("b", dependsOn: ["a"]).write(toFile: dir + "/b.toml", atomically: true, encoding: .utf8)
        try "not a manifest".write(toFile: dir + "/README.md", atomically: true, encoding: .utf8)
        try "garbage [[".write(toFile: dir + "/.b.toml.swp.toml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/sub.toml", withIntermediateDirectories: true)
        let set = try ManifestSet.load(directory: dir)
        #expect(set.startOrder == ["a", "b"])
        #expect(set.manifest(named: "b")?.sourcePath == dir + "/b.toml")
    }

    @Test func missingAndEmptyFoldersAreErrors() throws {
        let dir = try makeFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: ManifestErrors.self) { try ManifestSet.load(directory: dir + "/nope") }
        do {
            _ = try ManifestSet.load(directory: dir)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "\(dir): no service manifests (*.toml) in this folder")
        }
        do {
            _ = try ManifestSet.load(directory: dir + "/nope")
        } catch {
            #expect(error.description == "\(dir)/nope: no such directory")
        }
    }

    @Test func errorsUseTheFolderAsGiven() throws {
        let dir = try makeFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try minimal("a", dependsOn: ["ghost"]).write(toFile: dir + "/a.toml", atomically: true, encoding: .utf8)
        do {
            _ = try ManifestSet.load(directory: dir + "/")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "\(dir)/a.toml:4: service.depends_on: depends_on names \"ghost\", which has no manifest in \(dir)/")
        }
    }
}
