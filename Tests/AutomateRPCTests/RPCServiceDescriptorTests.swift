import AutomateRPC
import AutomateSupervisor
import BackupContract
import DomainAPI
import Foundation
import SidecarProto
import SwiftProtobuf
import Testing

/// Every method of every generated service descriptor round-trips through a typed client and a
/// typed server, under the name the stack's servers have always used.
@Suite struct RPCServiceDescriptorTests {
    static let services: [(String, [any RPCMethod])] = [
        ("PGSidecarService", PGSidecarService.methods),
        ("ESSidecarService", ESSidecarService.methods),
        ("BackupService", BackupService.methods),
        ("DeploymentService", DeploymentService.methods),
        ("SupervisorService", SupervisorService.methods),
        ("TeamsService", TeamsService.methods),
        ("ComplianceService", ComplianceService.methods),
    ]

    /// A field number no message of the stack uses: a marker travels in it as an unknown field,
    /// which protobuf keeps when decoding and re-encoding any message type.
    static let markerField: UInt64 = 536_870_000

    static func marked<M: SwiftProtobuf.Message>(_ type: M.Type, _ text: String) throws -> M {
        var bytes: [UInt8] = []
        var key = markerField << 3 | 2
        while key >= 0x80 { bytes.append(UInt8(key & 0x7F) | 0x80); key >>= 7 }
        bytes.append(UInt8(key))
        let utf8 = Array(text.utf8)
        precondition(utf8.count < 0x80)
        bytes.append(UInt8(utf8.count))
        bytes += utf8
        return try M(serializedBytes: bytes)
    }

    static func marker(of message: some SwiftProtobuf.Message) -> String? {
        let data = message.unknownFields.data
        guard data.count > 5 else { return nil }
        return String(decoding: data.dropFirst(6), as: UTF8.self)
    }

    /// Serves `method` with an echo of the request's marker, prefixed with the method name the
    /// server saw; a stream sends it twice, numbered.
    static func registerEcho<M: RPCMethod>(_ method: M, on server: RPCServer) {
        if let unary = method as? RPCUnaryMethod<M.Request, M.Response> {
            server.register(unary) { request, context in
                try marked(M.Response.self, "\(context.method)|\(marker(of: request) ?? "none")")
            }
        } else if let stream = method as? RPCServerStreamMethod<M.Request, M.Response> {
            server.register(stream) { request, writer, context in
                for n in 1...2 {
                    try await writer.send(try marked(M.Response.self, "\(n):\(context.method)|\(marker(of: request) ?? "none")"))
                }
            }
        } else {
            Issue.record("\(method.name) is neither unary nor server-streaming")
        }
    }

    /// Calls `method` with a marked request and checks what comes back.
    static func roundTrip<M: RPCMethod>(_ method: M, on client: RPCClient) async throws {
        let tag = "\(UInt32.random(in: 0...UInt32.max))"
        let request = try marked(M.Request.self, tag)
        if let unary = method as? RPCUnaryMethod<M.Request, M.Response> {
            #expect(!method.isServerStreaming)
            let response = try await client.call(unary, request, timeout: .seconds(10))
            #expect(marker(of: response) == "\(method.name)|\(tag)")
        } else if let stream = method as? RPCServerStreamMethod<M.Request, M.Response> {
            #expect(method.isServerStreaming)
            var received: [String?] = []
            for try await response in client.stream(stream, request, timeout: .seconds(10)) {
                received.append(marker(of: response))
            }
            #expect(received == ["1:\(method.name)|\(tag)", "2:\(method.name)|\(tag)"])
        }
    }

    @Test func everyGeneratedMethodRoundTrips() async throws {
        var count = 0
        for (service, methods) in Self.services {
            try await withServer({ server in
                for method in methods { Self.registerEcho(method, on: server) }
            }) { server, path in
                #expect(Set(server.registeredMethods) == Set(methods.map(\.name)), "\(service)")
                let client = try await RPCClient.connect(socketPath: path)
                for method in methods {
                    try await Self.roundTrip(method, on: client)
                    count += 1
                }
                await client.close()
            }
        }
        #expect(count == 60)
    }

    @Test func typedCallToAMethodTheServerLacksFailsUnimplemented() async throws {
        try await withServer({ server in
            server.register(TeamsService.listTeams) { _, _ in Automate_Teams_V1_ListTeamsResponse() }
        }) { _, path in
            let client = try await RPCClient.connect(socketPath: path)
            #expect(try await client.call(TeamsService.listTeams, .init()).teams.isEmpty)
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.call(TeamsService.addTeam, .init())
            }
            #expect(error?.code == .unimplemented)
            #expect(error?.message.contains("automate.teams.v1.Teams/AddTeam") == true)
            await client.close()
        }
    }

    /// The names the servers and clients of the stack used before the descriptors existed (the
    /// wire does not change): the sidecars' bare names, the others' "<package>.<Service>/<Method>".
    @Test func wireNamesAreUnchanged() {
        #expect(PGSidecarService.methods.map(\.name) == [
            "CreateRepo", "DeleteRepo", "ListDatabases", "CreateBackup", "DeleteBackup", "Restore", "Status", "WatchStatus",
            "Cancel", "CreateBaseBackup", "ArchiveWAL", "FetchWAL", "WALArchiveStatus", "ReadBaseBackup", "ClusterRecovery",
        ])
        #expect(ESSidecarService.methods.map(\.name) == [
            "CreateRepo", "DeleteRepo", "CreateSnapshot", "DeleteSnapshot", "RestoreSnapshot", "SnapshotStatus",
            "WatchStatus", "Cancel",
        ])
        #expect(BackupService.methods.map(\.name) == [
            "CreateBackup", "BackupStatus", "WatchBackup", "ListBackups", "DeleteBackup", "Restore", "RestoreStatusShortTerm",
            "RestoreStatusLongTerm", "WatchRestoreShortTerm", "WatchRestoreLongTerm",
        ].map { "automate.backup.v1.BackupService/\($0)" })
        #expect(DeploymentService.methods.map(\.name) == [
            "CreateBackup", "WatchBackup", "BackupStatus", "CancelBackup", "ListBackups", "DeleteBackups", "Restore",
            "WatchRestore", "RestoreStatus",
        ].map { "automate.deployment.v1.DeploymentService/\($0)" })
        #expect(SupervisorService.methods.map(\.name) == [
            "Status", "StartService", "StopService", "RestartService", "ReleaseHold", "Shutdown", "Watch", "Reload",
            "RotateGatewayCredentials",
        ].map { "automate.supervisor.v1.Supervisor/\($0)" })
        #expect(TeamsService.methods.map(\.name) == ["AddTeam", "ListTeams", "RemoveTeam", "AddMember"].map { "automate.teams.v1.Teams/\($0)" })
        #expect(ComplianceService.methods.map(\.name) == [
            "AddReport", "ListReports", "SearchReports", "UploadProfile", "ListProfiles",
        ].map { "automate.compliance.v1.Compliance/\($0)" })
        #expect(PGSidecarService.watchStatus.isServerStreaming && SupervisorService.watch.isServerStreaming)
        #expect(!PGSidecarService.status.isServerStreaming)
    }
}
