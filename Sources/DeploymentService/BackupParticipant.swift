import AutomateRPC
import BackupContract
import Foundation
import ServiceKit

/// One service taking part in a stack backup: asked over its socket (it implements the contract) or
/// backed up in process through the service kit from what its manifest declares.
protocol BackupParticipant: Sendable {
    var name: String { get }
    /// Starts the backup and follows it to its end; `update` sees every status. Throws when it cannot be
    /// followed (the service died, its socket went away).
    func run(backupID: String, update: @escaping @Sendable (ServiceBackupStatus) -> Void) async throws -> ServiceBackupStatus
    /// Stops its work under `backupID` and removes what it wrote (cancel).
    func abandon(backupID: String) async
}

/// A service that implements the backup contract: CreateBackup, then WatchBackup until it ends.
struct RemoteParticipant: BackupParticipant {
    let name: String
    let socketPath: String

    func run(backupID: String, update: @escaping @Sendable (ServiceBackupStatus) -> Void) async throws -> ServiceBackupStatus {
        let client: RPCClient
        do { client = try await RPCClient.connect(socketPath: socketPath) } catch {
            throw ParticipantError("\(name) is unreachable at \(socketPath): \(error)")
        }
        defer { Task { await client.close() } }
        var create = Automate_Backup_V1_CreateBackupRequest()
        create.backupID = backupID
        do {
            update(try await client.call(BackupService.createBackup, create, timeout: .seconds(60)))
        } catch {
            throw ParticipantError("\(name) refused CreateBackup: \(error)")
        }
        var watch = Automate_Backup_V1_BackupStatusRequest()
        watch.backupID = backupID
        watch.watch = true
        var last: ServiceBackupStatus?
        do {
            for try await s in client.stream(BackupService.watchBackup, watch) {
                last = s
                update(s)
            }
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw ParticipantError("\(name) stopped answering during the backup (did it exit?): \(error)")
        }
        try Task.checkCancellation()
        guard let last, last.state != .running else {
            throw ParticipantError("\(name) ended the watch of backup \(backupID) before it finished")
        }
        return last
    }

    func abandon(backupID: String) async {
        guard let client = try? await RPCClient.connect(socketPath: socketPath) else { return }
        var req = Automate_Backup_V1_DeleteBackupRequest()
        req.backupID = backupID
        _ = try? await client.call(BackupService.deleteBackup, req, timeout: .seconds(30))
        await client.close()
    }
}

/// A service without the contract: the deployment-service runs the kit for it (phase one and two).
struct LocalParticipant: BackupParticipant {
    let name: String
    let kit: BackupKit

    func run(backupID: String, update: @escaping @Sendable (ServiceBackupStatus) -> Void) async throws -> ServiceBackupStatus {
        update(try await kit.createBackup(backupID))
        var last: ServiceBackupStatus?
        let stream = try await kit.watchBackup(backupID)
        await withTaskCancellationHandler {
            for await s in stream {
                last = s
                update(s)
            }
        } onCancel: {
            Task { _ = await kit.cancelBackup(backupID) }
        }
        try Task.checkCancellation()
        guard let last else { throw ParticipantError("\(name): the backup ended without a status") }
        return last
    }

    func abandon(backupID: String) async {
        _ = try? await kit.deleteBackup(backupID)
    }
}

struct ParticipantError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
