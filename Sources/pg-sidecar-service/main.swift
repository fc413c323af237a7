// pg-sidecar-service: PostgreSQL dumps and restores through the backup gateway. Configuration comes from
// the supervisor's environment (see PGSidecarConfig.fromEnvironment and services/pg-sidecar-service.toml).
import AutomateRPC
import Foundation
import Logging
import Operations
import PGSidecar
import S3Client
import SidecarProto
#if canImport(Glibc)
import Glibc
#endif

LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = .info
    return h
}
let logger = Logger(label: "pg-sidecar-service")

// Client mode, for operators and scripts/bench-sidecars.sh:
//   pg-sidecar-service backup  <socket> <backup-id> <service> <database>...
//   pg-sidecar-service restore <socket> <backup-id> <service> [<database>...]
// Starts the operation, follows its status, prints the final status as JSON; exit 0 when completed.
let arguments = CommandLine.arguments
if arguments.count >= 5, arguments[1] == "backup" || arguments[1] == "restore" {
    do {
        let client = try await RPCClient.connect(socketPath: arguments[2])
        let op: String
        if arguments[1] == "backup" {
            var req = Automate_Sidecar_Pg_PGCreateBackupRequest()
            req.backupID = arguments[3]; req.service = arguments[4]; req.databases = Array(arguments.dropFirst(5))
            op = try await client.call(PGSidecarService.createBackup, req).operationID
        } else {
            var req = Automate_Sidecar_Pg_PGRestoreRequest()
            req.backupID = arguments[3]; req.service = arguments[4]; req.databases = Array(arguments.dropFirst(5))
            op = try await client.call(PGSidecarService.restore, req).operationID
        }
        var request = Automate_Sidecar_Pg_PGStatusRequest()
        request.operationID = op
        var final = Automate_Sidecar_Pg_PGStatus()
        for try await s in client.stream(PGSidecarService.watchStatus, request) { final = s }
        print(try final.jsonString())
        await client.close()
        exit(final.phase == .completed ? 0 : 1)
    } catch {
        FileHandle.standardError.write(Data("pg-sidecar-service: \(error)\n".utf8))
        exit(1)
    }
}

let config: PGSidecarConfig
do {
    config = try PGSidecarConfig.fromEnvironment()
} catch {
    logger.critical("pg-sidecar-service: \(error)")
    exit(2)
}
let sidecar = PGSidecar(config: config, logger: logger)
var serverConfiguration = RPCServer.Configuration(socketPath: config.socketPath)
// Clients (the services that depend on this sidecar) back up and restore their own databases; whole
// repository prefixes are the deployment-service's.
serverConfiguration.trustedOnlyMethods = [
    PGSidecarService.createRepo.name, PGSidecarService.deleteRepo.name, PGSidecarService.createBaseBackup.name, PGSidecarService.clusterRecovery.name,
]
// ArchiveWAL carries a whole WAL segment (16 MiB) and its framing.
serverConfiguration.maxFrameSize = PGSidecar.maxWALFrame
let server = RPCServer(configuration: serverConfiguration, logger: logger)
sidecar.register(on: server)

let (stop, stopRequested) = AsyncStream<Int32>.makeStream()
// Lives as long as the process: a released watcher stops delivering, and the signals stay ignored.
let signals = SignalWatcher(signals: [SIGTERM, SIGINT]) { stopRequested.yield($0) }

do {
    let stale = try await runBlocking("pg.stale-uploads") { _ in try sidecar.abortStaleUploads() }
    if stale > 0 { logger.notice("aborted \(stale) multipart upload(s) left open by an earlier run") }
} catch {
    logger.warning("could not look for stale multipart uploads: \(error)")
}

do {
    try await server.start()
    logger.info("pg-sidecar-service listening on \(config.socketPath); PostgreSQL \(config.server.host):\(config.server.port); S3 \(config.s3.endpoint)/\(config.bucket)")
    for await sig in stop {
        logger.info("signal \(sig): stopping (running operations are abandoned; their multipart uploads are never completed)")
        break
    }
    await server.shutdown()
} catch {
    logger.critical("pg-sidecar-service: \(error)")
    exit(1)
}
