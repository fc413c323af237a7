// pg-sidecar-service: PostgreSQL dumps and restores through the backup gateway. Configuration comes from
// the supervisor's environment (see PGSidecarConfig.fromEnvironment and services/pg-sidecar-service.toml).
import AutomateRPC
import Foundation
import Logging
import PGSidecar
#if canImport(Glibc)
import Glibc
#endif

LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = .info
    return h
}
let logger = Logger(label: "pg-sidecar-service")

let config: PGSidecarConfig
do {
    config = try PGSidecarConfig.fromEnvironment()
} catch {
    logger.critical("pg-sidecar-service: \(error)")
    exit(2)
}
let sidecar = PGSidecar(config: config, logger: logger)
let server = RPCServer(configuration: .init(socketPath: config.socketPath), logger: logger)
sidecar.register(on: server)

signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
let stop = AsyncStream<Int32> { continuation in
    for sig in [SIGTERM, SIGINT] {
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { continuation.yield(sig) }
        source.resume()
        nonisolated(unsafe) let keep = source
        continuation.onTermination = { _ in keep.cancel() }
    }
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
