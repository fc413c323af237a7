// deployment-service: orchestrates one backup of every service under one id, keeps its own state in an
// SQLite store, and (restore) relaunches services from a backup. Configuration from the supervisor's
// environment; see DeploymentConfig.fromEnvironment and services/deployment-service.toml.
import AutomateRPC
import DeploymentService
import Foundation
import ServiceKit

let logger = ServiceRuntime.bootstrapLogging("deployment-service")
do {
    let config = try DeploymentConfig.fromEnvironment()
    let store = try DeploymentStore(path: config.storePath)
    let orchestrator = BackupOrchestrator(config: config, store: store, logger: logger)
    let restores = RestoreOrchestrator(config: config, store: store, logger: logger)
    // What a stop left running: failed in the store now, in the repository in the background.
    let reconciler = StartupReconciler(config: config, store: store, logger: logger)
    _ = try await reconciler.failInterrupted(restores: restores)
    let reconciling = reconciler.settleRepository()
    let server = RPCServer(configuration: .init(socketPath: try ServiceRuntime.socketPath()), logger: logger)
    DeploymentAPI(backups: orchestrator, restores: restores).register(on: server)
    try await ServiceRuntime.serve(server, logger: logger)
    reconciling.cancel()
} catch {
    logger.critical("deployment-service: \(error)")
    exit(1)
}
