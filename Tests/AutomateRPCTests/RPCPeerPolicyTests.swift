import AutomateRPC
import Foundation
import Testing

@Suite struct RPCPeerPolicyTests {
    @Test func rolesAndTheEnvironmentForm() throws {
        let policy = try RPCPeerPolicy(parsing: "trusted=0,997 client=995:teams-service:teams_service client=996:compliance-service:")
        #expect(policy.caller(uid: 0) == .trusted && policy.caller(uid: 997) == .trusted)
        #expect(policy.caller(uid: 995) == .client(RPCClientService(service: "teams-service", databases: ["teams_service"])))
        #expect(policy.caller(uid: 996) == .client(RPCClientService(service: "compliance-service", databases: [])))
        #expect(policy.caller(uid: 1000) == nil, "a stranger")
        #expect(policy.description == "trusted=0,997 client=995:teams-service:teams_service client=996:compliance-service:")
        #expect(try RPCPeerPolicy(parsing: policy.description) == policy)
    }

    @Test func malformedPolicyNamesThePart() {
        let error = #expect(throws: RPCPeerPolicyError.self) { try RPCPeerPolicy(parsing: "trusted=0,abc") }
        #expect(error?.description.contains("\"trusted=0,abc\": \"abc\" is not a uid") == true, "\(String(describing: error))")
        #expect(throws: RPCPeerPolicyError.self) { try RPCPeerPolicy(parsing: "client=12") }
        #expect(throws: RPCPeerPolicyError.self) { try RPCPeerPolicy(parsing: "everyone") }
    }

    @Test func withoutAPolicyOnlyTheOwnerAndRootMayCall() throws {
        #expect(try RPCPeerPolicy.fromEnvironment([:]) == .ownerAndRoot)
        #expect(RPCPeerPolicy.ownerAndRoot.caller(uid: 0) == .trusted)
        #expect(RPCPeerPolicy.ownerAndRoot.caller(uid: geteuid()) == .trusted)
        #expect(RPCPeerPolicy.ownerAndRoot.caller(uid: 4242) == (geteuid() == 4242 ? .trusted : nil))
    }

    @Test func aClientActsForItselfAndItsDatabasesOnly() throws {
        let teams = RPCCaller.client(RPCClientService(service: "teams-service", databases: ["teams_service"]))
        try teams.mayActFor(service: "teams-service", method: "Restore")
        try teams.mayUse(databases: ["teams_service"], method: "Restore")
        let other = #expect(throws: RPCError.self) { try teams.mayActFor(service: "compliance-service", method: "Restore") }
        #expect(other?.code == .permissionDenied && other?.message.contains("Restore for compliance-service is not allowed for teams-service") == true)
        let foreign = #expect(throws: RPCError.self) { try teams.mayUse(databases: ["teams_service", "compliance_service"], method: "Restore") }
        #expect(foreign?.message.contains("database compliance_service is not allowed for teams-service: it owns teams_service") == true)
        try RPCCaller.trusted.mayActFor(service: "anything", method: "Restore")
        try RPCCaller.trusted.mayUse(databases: ["anything"], method: "Restore")
    }

    /// The caller's uid comes from the kernel (SO_PEERCRED). As a client this process may call what is
    /// not trusted-only, and its handlers see who it is; a trusted-only method gets PERMISSION_DENIED
    /// naming the method and the caller, and the connection stays usable.
    @Test func clientIsKeptFromTrustedOnlyMethods() async throws {
        let me = UInt32(geteuid())
        let other = me == 4242 ? UInt32(4243) : UInt32(4242)
        let policy = RPCPeerPolicy(trusted: [other], clients: [me: RPCClientService(service: "teams-service", databases: ["teams_service"])])
        try await withServer(peers: policy, trustedOnlyMethods: ["test/Admin"], { server in
            server.registerUnary("test/Who") { (request: Msg, context: RPCCallContext) in
                guard case .client(let client) = context.caller, context.peer?.uid == me else { return Msg.text("wrong caller") }
                return Msg.text(client.service)
            }
            server.registerUnary("test/Admin") { (request: Msg, _: RPCCallContext) in request }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            #expect(try await client.unary("test/Who", Msg.text("hi"), as: Msg.self).method == "teams-service")
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.unary("test/Admin", Msg.text("hi"), as: Msg.self)
            }
            #expect(error?.code == .permissionDenied)
            #expect(error?.message.contains("test/Admin is not allowed for uid \(me)") == true, "\(String(describing: error))")
            #expect(error?.message.contains("pid \(getpid())") == true, "\(String(describing: error))")
            #expect(try await client.unary("test/Who", Msg.text("again"), as: Msg.self).method == "teams-service")
            await client.close()
        }
    }

    @Test func strangerIsRefusedEverything() async throws {
        let other = geteuid() == 4242 ? UInt32(4243) : UInt32(4242)
        try await withServer(peers: RPCPeerPolicy(trusted: [other]), { server in
            server.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            let error = await #expect(throws: RPCError.self) { _ = try await client.unary("test/Echo", Msg.text("hi"), as: Msg.self) }
            #expect(error?.code == .permissionDenied)
            await client.close()
        }
    }
}
