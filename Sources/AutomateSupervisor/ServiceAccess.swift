import AutomateManifest
import AutomateRPC
import Foundation

/// What one service may reach, when the supervisor runs as root: the user it runs as (with the
/// supplementary groups that open the sockets and shared folders it needs), whether its data folder is
/// group-shared, and who may call its RPC methods.
public struct ServiceAccess: Sendable, Equatable {
    /// The user, with its supplementary groups.
    public var user: ServiceUser
    /// The group its data folder is shared through (02770) with the services named in `shared_with` and
    /// with the deployment-service when it backs up `[backup] paths` for it; nil: private (0700).
    public var dataGroup: gid_t?
    /// Who may call its RPC methods (nil: it serves none).
    public var peers: RPCPeerPolicy?

    public init(user: ServiceUser, dataGroup: gid_t?, peers: RPCPeerPolicy?) {
        self.user = user
        self.dataGroup = dataGroup
        self.peers = peers
    }

    /// The PostgreSQL databases a service owns: its name with `_` for `-` (`teams-service` →
    /// `teams_service`, as the reference services name theirs) and those its `[backup] databases` names.
    public static func ownedDatabases(_ manifest: ServiceManifest) -> [String] {
        let conventional = manifest.name.replacingOccurrences(of: "-", with: "_")
        return [conventional] + manifest.backup.databases.filter { $0 != conventional }
    }

    /// Whether a service's data folder is shared: it names services in `shared_with`, or the
    /// orchestrator backs up its `[backup] paths` (it does not implement the contract).
    public static func sharesData(_ manifest: ServiceManifest, in manifests: ManifestSet) -> Bool {
        !manifest.sharedWith.isEmpty
            || (!manifest.backup.contract && !manifest.backup.paths.isEmpty && manifests.services.contains { $0.kind == .orchestrator })
    }

    /// The name of the group a service's data folder is shared through: its user's name + `-data`,
    /// within the 32 characters groupadd allows.
    public static func dataGroupName(_ manifest: ServiceManifest) -> String {
        String(manifest.runUserName.prefix(32 - "-data".count)) + "-data"
    }

    /// Derives every service's access from the manifests.
    ///
    /// - A service's user group reaches its socket (0660; PostgreSQL's too). It goes to the services that
    ///   depend on it, to its `callers` and to the orchestrator (the deployment-service), which calls every
    ///   service.
    /// - A shared data folder's group (``dataGroupName(_:)``) goes to the services named in
    ///   `shared_with`, and to the orchestrator when it backs up the folder's `[backup] paths`.
    /// - Its RPC methods may be called by the operators (root, the supervisor's user, the home's
    ///   owner), by itself and by the orchestrator (trusted); its dependents and callers are its clients, each
    ///   knowing its own databases (``ownedDatabases(_:)``), kept from its trusted-only methods.
    /// - Every service user is in `runGroup`, the group of the run folder (01770).
    /// - Parameters:
    ///   - users: each service's user as looked up (primary group, no extra groups); a service missing
    ///     here runs as the supervisor's user and gets no entry.
    ///   - dataGroups: the group of each service whose data folder is shared.
    ///   - operators: uids that may call anything.
    public static func derive(
        manifests: ManifestSet, users: [String: ServiceUser], dataGroups: [String: gid_t], operators: Set<UInt32>, runGroup: gid_t?
    ) -> [String: ServiceAccess] {
        let orchestrator = manifests.services.first { $0.kind == .orchestrator }
        let orchestratorUID = orchestrator.flatMap { users[$0.name] }.map { UInt32($0.uid) }
        var result: [String: ServiceAccess] = [:]
        for manifest in manifests.services {
            guard let user = users[manifest.name] else { continue }
            var groups = Set(user.groups)
            groups.insert(user.gid)
            if let runGroup { groups.insert(runGroup) }
            // Its own shared folder holds files others wrote (a restore, a save) until its next start.
            if let own = dataGroups[manifest.name] { groups.insert(own) }
            for other in manifests.services where other.name != manifest.name {
                if let otherUser = users[other.name], manifest.dependsOn.contains(other.name) || other.callers.contains(manifest.name) || manifest.kind == .orchestrator {
                    groups.insert(otherUser.gid)
                }
                if let data = dataGroups[other.name],
                    other.sharedWith.contains(manifest.name) || (manifest.kind == .orchestrator && !other.backup.paths.isEmpty) {
                    groups.insert(data)
                }
            }
            var peers: RPCPeerPolicy? = nil
            if manifest.socket != nil {
                var trusted = operators
                trusted.insert(UInt32(user.uid))
                if let orchestratorUID { trusted.insert(orchestratorUID) }
                var clients: [UInt32: RPCClientService] = [:]
                for dependent in manifests.services where dependent.dependsOn.contains(manifest.name) || manifest.callers.contains(dependent.name) {
                    guard let uid = users[dependent.name]?.uid, !trusted.contains(UInt32(uid)) else { continue }
                    clients[UInt32(uid)] = RPCClientService(service: dependent.name, databases: ownedDatabases(dependent))
                }
                peers = RPCPeerPolicy(trusted: trusted, clients: clients)
            }
            result[manifest.name] = ServiceAccess(
                user: user.with(groups: groups.sorted()), dataGroup: dataGroups[manifest.name], peers: peers)
        }
        return result
    }
}
