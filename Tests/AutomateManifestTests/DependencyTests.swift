import AutomateManifest
import Testing

@Suite struct DependencyTests {
    @Test func unknownDependencyAndSelfDependency() {
        #expect(diagnostics([
            ("a.toml", """
                [service]
                name = "a"
                command = ["/bin/a"]
                depends_on = [
                  "b",
                  "x",
                  "a",
                  "b",
                ]
                """),
            ("b.toml", minimal("b")),
        ]) == [
            #"services/a.toml:6: service.depends_on: depends_on names "x", which has no manifest in services/"#,
            #"services/a.toml:7: service.depends_on: "a" depends on itself"#,
            #"services/a.toml:8: service.depends_on: "b" is listed twice"#,
        ])
    }

    @Test func threeServiceCycleNamesAllThree() {
        let d = diagnostics([
            ("c.toml", minimal("c", dependsOn: ["a"])),
            ("a.toml", minimal("a", dependsOn: ["b"])),
            ("b.toml", minimal("b", dependsOn: ["c"])),
            ("d.toml", minimal("d", dependsOn: ["a"])),
        ])
        #expect(d == ["services/a.toml:4: service.depends_on: dependency cycle: a -> b -> c -> a"])
    }

    @Test func cycleLineIsTheDependsOnEntryInAMultiLineArray() {
        let d = diagnostics([
            ("web.toml", """
                [service]
                name = "web"
                command = ["/bin/web"]
                depends_on = [
                  "db",
                  "api",
                ]
                """),
            ("api.toml", minimal("api", dependsOn: ["web"])),
            ("db.toml", minimal("db")),
        ])
        #expect(d == ["services/api.toml:4: service.depends_on: dependency cycle: api -> web -> api"])
    }

    @Test func twoSeparateCyclesAreBothReported() {
        let d = diagnostics([
            ("a.toml", minimal("a", dependsOn: ["b"])),
            ("b.toml", minimal("b", dependsOn: ["a"])),
            ("x.toml", minimal("x", dependsOn: ["y"])),
            ("y.toml", minimal("y", dependsOn: ["x"])),
        ])
        #expect(d == [
            "services/a.toml:4: service.depends_on: dependency cycle: a -> b -> a",
            "services/x.toml:4: service.depends_on: dependency cycle: x -> y -> x",
        ])
    }

    @Test func startOrderIsTopologicalAndDeterministic() throws {
        let files: [(path: String, contents: String)] = [
            ("services/web.toml", minimal("web", dependsOn: ["api", "gateway"])),
            ("services/api.toml", minimal("api", dependsOn: ["postgres"])),
            ("services/postgres.toml", minimal("postgres")),
            ("services/gateway.toml", minimal("gateway")),
            ("services/zeta.toml", minimal("zeta")),
            ("services/alpha.toml", minimal("alpha", dependsOn: ["zeta"])),
        ]
        let set = try ManifestSet.parse(files: files)
        #expect(set.startOrder == ["gateway", "postgres", "api", "web", "zeta", "alpha"])
        let reversed = try ManifestSet.parse(files: files.reversed())
        #expect(reversed.startOrder == set.startOrder)
        #expect(set.services.map(\.name) == ["alpha", "api", "gateway", "postgres", "web", "zeta"])
        #expect(set.dependents(of: "postgres") == ["api", "web"])
        #expect(set.dependents(of: "web") == [])
        #expect(set.dependencies(of: "web") == ["gateway", "postgres", "api"])
        #expect(set.manifest(named: "nope") == nil)
    }
}
