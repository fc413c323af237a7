#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Who may call a server, by Unix uid, read from each connection's socket (`SO_PEERCRED`): an `RPCServer`
/// checks every call against it.
///
/// - **Trusted** callers (the operators, the service itself, the deployment-service) may call every
///   method.
/// - **Clients** (the services whose manifests depend on this one) may call every method but the
///   server's trusted-only ones (`RPCServer.Configuration.trustedOnlyMethods`: the backup contract by
///   default), and each acts only for itself: a handler reads ``RPCCaller`` to keep a client to its own
///   service's data (its databases, its folder in the repository).
/// - Anybody else gets `PERMISSION_DENIED`.
///
/// The supervisor derives one policy per service from the manifests and hands it over in
/// `AUTOMATE_RPC_PEERS`: `trusted=<uid>,<uid> client=<uid>:<service>:<database>,<database> ...`, for
/// example `trusted=0,997 client=995:teams-service:teams_service`.
public struct RPCPeerPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Uids that may call everything.
    public var trusted: Set<UInt32>
    /// Uids of client services, with what each owns.
    public var clients: [UInt32: RPCClientService]

    public init(trusted: Set<UInt32>, clients: [UInt32: RPCClientService] = [:]) {
        self.trusted = trusted
        self.clients = clients
    }

    /// The policy of a server started without one: its own user and root, nobody else.
    public static var ownerAndRoot: RPCPeerPolicy {
        RPCPeerPolicy(trusted: [0, UInt32(geteuid())])
    }

    /// The variable the supervisor passes a service's policy in.
    public static let environmentVariable = "AUTOMATE_RPC_PEERS"

    /// Who `uid` is to this server; nil: a stranger.
    public func caller(uid: UInt32) -> RPCCaller? {
        if trusted.contains(uid) { return .trusted }
        return clients[uid].map(RPCCaller.client)
    }

    /// The environment form.
    public var description: String {
        (["trusted=" + trusted.sorted().map(String.init).joined(separator: ",")]
            + clients.keys.sorted().map { uid in
                let client = clients[uid]!
                return "client=\(uid):\(client.service):" + client.databases.joined(separator: ",")
            }).joined(separator: " ")
    }

    /// Parses the environment form; the error names the part that is wrong.
    public init(parsing text: String) throws(RPCPeerPolicyError) {
        var trusted: Set<UInt32> = []
        var clients: [UInt32: RPCClientService] = [:]
        for part in text.split(separator: " ", omittingEmptySubsequences: true) {
            if part.hasPrefix("trusted=") {
                for uid in part.dropFirst("trusted=".count).split(separator: ",") {
                    guard let value = UInt32(uid) else { throw RPCPeerPolicyError(part: String(part), reason: "\"\(uid)\" is not a uid") }
                    trusted.insert(value)
                }
            } else if part.hasPrefix("client=") {
                let fields = part.dropFirst("client=".count).split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard fields.count == 3, let uid = UInt32(fields[0]), !fields[1].isEmpty else {
                    throw RPCPeerPolicyError(part: String(part), reason: "a client is <uid>:<service>:<database>,...")
                }
                clients[uid] = RPCClientService(service: String(fields[1]), databases: fields[2].split(separator: ",").map(String.init))
            } else {
                throw RPCPeerPolicyError(part: String(part), reason: "neither trusted=... nor client=...")
            }
        }
        self.init(trusted: trusted, clients: clients)
    }

    /// The policy in `AUTOMATE_RPC_PEERS` if set, else ``ownerAndRoot``.
    public static func fromEnvironment(_ environment: [String: String]) throws(RPCPeerPolicyError) -> RPCPeerPolicy {
        guard let text = environment[environmentVariable] else { return .ownerAndRoot }
        return try RPCPeerPolicy(parsing: text)
    }
}

/// A client service, as a server knows it: its name and the databases it owns.
public struct RPCClientService: Sendable, Equatable {
    public var service: String
    public var databases: [String]

    public init(service: String, databases: [String]) {
        self.service = service
        self.databases = databases
    }
}

/// Who is calling, as the peer policy sees it.
public enum RPCCaller: Sendable, Equatable {
    /// An operator, the service itself or the deployment-service: may do anything.
    case trusted
    /// A service that depends on this one, acting for itself only.
    case client(RPCClientService)

    /// Throws `PERMISSION_DENIED` unless the caller may act for `service` (trusted, or that very client).
    public func mayActFor(service: String, method: String) throws(RPCError) {
        if case .client(let client) = self, client.service != service {
            throw RPCError(.permissionDenied, "\(method) for \(service) is not allowed for \(client.service): a service acts for itself only")
        }
    }

    /// Throws `PERMISSION_DENIED` unless the caller may touch these databases (trusted, or a client
    /// that owns them all).
    public func mayUse(databases: [String], method: String) throws(RPCError) {
        if case .client(let client) = self, let foreign = databases.first(where: { !client.databases.contains($0) }) {
            throw RPCError(.permissionDenied, "\(method) of database \(foreign) is not allowed for \(client.service): it owns \(client.databases.isEmpty ? "no database" : client.databases.joined(separator: ", "))")
        }
    }
}

/// An `AUTOMATE_RPC_PEERS` value that does not parse.
public struct RPCPeerPolicyError: Error, CustomStringConvertible {
    public let part: String
    public let reason: String
    public var description: String {
        "\(RPCPeerPolicy.environmentVariable): \"\(part)\": \(reason) (the supervisor sets this variable; start the service through it)"
    }
}
