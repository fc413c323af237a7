import AutomateManifest
import AutomateRPC
import AutomateSupervisor
import Foundation
import Testing

/// What each service may reach, derived from the manifests alone (no users made: fixed uids).
@Suite("Service access")
struct ServiceAccessTests {
    static let manifests = try! ManifestSet.parse(files: [
        ("services/db.toml", "[service]\nname = \"db\"\nkind = \"infrastructure\"\ncommand = [\"/bin/db\"]\n"),
        ("services/search.toml", "[service]\nname = \"search\"\ncommand = [\"/bin/s\"]\nshared_with = [\"saver\"]\n"),
        ("services/saver.toml", "[service]\nname = \"saver\"\ncommand = [\"/bin/v\"]\ndepends_on = [\"search\"]\n"),
        ("services/sidecar.toml", "[service]\nname = \"sidecar\"\nkind = \"sidecar\"\ncommand = [\"/bin/c\"]\nsocket = \"sidecar.sock\"\ndepends_on = [\"db\"]\n"),
        ("services/orchestrator.toml", "[service]\nname = \"orchestrator\"\nkind = \"orchestrator\"\ncommand = [\"/bin/o\"]\nsocket = \"o.sock\"\n"),
        ("services/app-service.toml", "[service]\nname = \"app-service\"\ncommand = [\"/bin/a\"]\nsocket = \"app.sock\"\ndepends_on = [\"db\", \"sidecar\"]\n[backup]\ncontract = true\ndatabases = [\"app_extra\"]\n"),
        ("services/legacy.toml", "[service]\nname = \"legacy\"\ncommand = [\"/bin/l\"]\ndepends_on = [\"db\"]\n[backup]\ndatabases = [\"legacy\"]\npaths = [\"/x\"]\n"),
    ].map { (path: $0.0, contents: $0.1) })

    static let uids: [String: uid_t] = ["db": 501, "search": 502, "saver": 503, "sidecar": 504, "orchestrator": 505, "app-service": 506, "legacy": 507]
    static let dataGroups: [String: gid_t] = ["search": 602, "legacy": 607]

    static func derive() -> [String: ServiceAccess] {
        let users = uids.mapValues { ServiceUser(name: "u\($0)", uid: $0, gid: $0, groups: [], homeDirectory: "/") }
        return ServiceAccess.derive(manifests: manifests, users: users, dataGroups: dataGroups, operators: [0, 1000], runGroup: 700)
    }

    @Test("groups: the run group, its dependencies' groups, the data groups shared with it; the orchestrator reaches all")
    func groups() {
        let access = Self.derive()
        #expect(Set(access["app-service"]!.user.groups) == [506, 700, 501, 504])
        #expect(Set(access["saver"]!.user.groups) == [503, 700, 502, 602], "search's group (a dependency) and its shared data group")
        #expect(!access["app-service"]!.user.groups.contains(602), "search's data is shared with saver only")
        #expect(Set(access["search"]!.user.groups) == [502, 700, 602], "its own data group, for what others write there")
        #expect(Set(access["orchestrator"]!.user.groups) == Set([505, 700, 501, 502, 503, 504, 506, 507, 607]),
                "every service's group and the data group of the service whose paths it backs up")
        #expect(access["search"]!.dataGroup == 602 && access["db"]!.dataGroup == nil)
    }

    @Test("peers: operators, itself and the orchestrator are trusted; dependents are clients owning their databases")
    func peers() throws {
        let access = Self.derive()
        let sidecar = try #require(access["sidecar"]!.peers)
        #expect(sidecar.trusted == [0, 1000, 504, 505])
        #expect(sidecar.clients == [506: RPCClientService(service: "app-service", databases: ["app_service", "app_extra"])])
        #expect(sidecar.caller(uid: 507) == nil, "legacy declares databases but does not depend on the sidecar")
        let orchestrator = try #require(access["orchestrator"]!.peers)
        #expect(orchestrator.trusted == [0, 1000, 505] && orchestrator.clients.isEmpty)
        #expect(access["db"]!.peers == nil, "no socket, no policy")
        #expect(ServiceAccess.sharesData(Self.manifests.manifest(named: "legacy")!, in: Self.manifests))
        #expect(ServiceAccess.dataGroupName(Self.manifests.manifest(named: "legacy")!) == "automate-legacy-data")
    }
}
