import AutomateRPC
import BackupContract
import Foundation

/// The deployment-service's RPC API (`Proto/deployment_service.proto` in BackupContract).
public struct DeploymentAPI: Sendable {

    let backups: BackupOrchestrator
    let restores: RestoreOrchestrator

    public init(backups: BackupOrchestrator, restores: RestoreOrchestrator) {
        self.backups = backups
        self.restores = restores
    }

    public func register(on server: RPCServer) {
        let backups = self.backups, restores = self.restores
        server.register(StackDeploymentService.restore) { (req: Automate_Deployment_V1_StackRestoreRequest, _) -> StackRestore in
            try await restores.restore(backupID: req.backupID, restoreID: req.restoreID, pointInTime: req.hasPointInTime ? req.pointInTime : nil)
        }
        server.register(StackDeploymentService.restoreStatus) { (req: Automate_Deployment_V1_StackRestoreStatusRequest, _) -> StackRestore in
            try await restores.status(req.restoreID)
        }
        server.register(StackDeploymentService.watchRestore) { (req: Automate_Deployment_V1_StackRestoreStatusRequest, writer: RPCResponseWriter<StackRestore>, _) in
            for await s in try await restores.watch(req.restoreID) { try await writer.send(s) }
        }
        server.register(StackDeploymentService.createBackup) { (req: Automate_Deployment_V1_CreateStackBackupRequest, _) -> StackBackup in
            try await backups.create(serviceTimeout: req.serviceTimeoutSeconds > 0 ? .seconds(Int(req.serviceTimeoutSeconds)) : nil)
        }
        server.register(StackDeploymentService.backupStatus) { (req: Automate_Deployment_V1_StackBackupRequest, _) -> StackBackup in
            try await backups.status(req.backupID)
        }
        server.register(StackDeploymentService.watchBackup) { (req: Automate_Deployment_V1_StackBackupRequest, writer: RPCResponseWriter<StackBackup>, _) in
            for await s in try await backups.watch(req.backupID) { try await writer.send(s) }
        }
        server.register(StackDeploymentService.cancelBackup) { (req: Automate_Deployment_V1_StackBackupRequest, _) -> StackBackup in
            try await backups.cancel(req.backupID)
        }
        server.register(StackDeploymentService.listBackups) { (_: Automate_Deployment_V1_ListStackBackupsRequest, _) -> Automate_Deployment_V1_ListStackBackupsResponse in
            var r = Automate_Deployment_V1_ListStackBackupsResponse()
            r.backups = try await backups.list()
            return r
        }
        server.register(StackDeploymentService.deleteBackups) { (req: Automate_Deployment_V1_DeleteStackBackupsRequest, _) -> Automate_Deployment_V1_DeleteStackBackupsResponse in
            let (deleted, objects) = try await backups.delete(req.backupIds)
            var r = Automate_Deployment_V1_DeleteStackBackupsResponse()
            r.deleted = deleted
            r.objectsDeleted = UInt64(objects)
            return r
        }
    }
}
