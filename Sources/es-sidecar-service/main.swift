// es-sidecar-service: search-engine backups through the backup gateway (export mode for any
// OpenSearch-API engine, `_snapshot` mode for real clusters). Configuration from the supervisor's
// environment; see ESSidecarConfig.fromEnvironment, services/es-sidecar-service.toml and docs/sidecars.md.
//
//   es-sidecar-service                         serve on $AUTOMATE_SERVICE_SOCKET
//   es-sidecar-service save <url> <dir>        export every index of the engine to <dir> (atomic per file)
//   es-sidecar-service load <url> <dir>        recreate and bulk-load every index saved in <dir>
import AutomateRPC
import ESSidecar
import Foundation
import Logging
import Operations
import S3Client
#if canImport(Glibc)
import Glibc
#endif

LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = .info
    return h
}
let logger = Logger(label: "es-sidecar-service")
let args = CommandLine.arguments

if args.count == 4, args[1] == "save" || args[1] == "load" {
    let local = LocalSearchSave(engine: SearchEngine(url: args[2]), directory: args[3])
    do {
        let n = args[1] == "save" ? try local.save() : try local.load(replace: false)
        print("es-sidecar-service: \(args[1]): \(n) indices")
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("es-sidecar-service: \(args[1]): \(error)\n".utf8))
        exit(1)
    }
} else if args.count > 1 {
    FileHandle.standardError.write(Data("usage: es-sidecar-service [save|load <search-url> <dir>]\n".utf8))
    exit(2)
}

let config: ESSidecarConfig
do {
    config = try ESSidecarConfig.fromEnvironment()
} catch {
    logger.critical("es-sidecar-service: \(error)")
    exit(2)
}
let env = ProcessInfo.processInfo.environment
// The stack's own engine (osmem-server keeps indices in memory): load the last save at start when the
// engine is empty, save periodically and on stop. Off unless `save_dir` is configured.
let saveDir = env["AUTOMATE_CFG_SAVE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
let saveInterval = Double(env["AUTOMATE_CFG_SAVE_INTERVAL_SECONDS"] ?? "") ?? 300
let local = saveDir.map { LocalSearchSave(engine: SearchEngine(url: config.searchURL, access: config.searchAccess), directory: $0) }

let sidecar = ESSidecar(config: config, logger: logger)
let server = RPCServer(configuration: .init(socketPath: config.socketPath), logger: logger)
sidecar.register(on: server)

signal(SIGPIPE, SIG_IGN)
let (stop, stopRequested) = AsyncStream<Int32>.makeStream()
// Lives as long as the process: a released watcher stops delivering, and the signals stay ignored.
let signals = SignalWatcher(signals: [SIGTERM, SIGINT]) { stopRequested.yield($0) }

do {
    if let local {
        do {
            let n = try await runBlocking("es.local-save") { _ in try local.loadIfEngineRestarted() }
            if n > 0 { logger.info("loaded \(n) indices from the save in \(local.directory)") }
        } catch {
            logger.error("could not load the search save from \(local.directory): \(error)")
        }
    }
    try await server.start()
    logger.info("es-sidecar-service (\(config.mode.rawValue) mode) listening on \(config.socketPath); engine \(config.searchURL); S3 \(config.s3.endpoint)/\(config.bucket)")
    let saver = Task {
        guard let local else { return }
        var lastSave = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(5))
            if Task.isCancelled { break }
            // The engine restarted on its own (automate restart automate-search): load the save into it.
            do {
                let n = try await runBlocking("es.local-save") { _ in try local.loadIfEngineRestarted() }
                if n > 0 { logger.info("the search engine restarted: loaded \(n) indices from \(local.directory)") }
            } catch {
                logger.error("could not load the search save into the restarted engine: \(error)")
                continue  // never save over a good save while the engine is not loaded
            }
            guard ContinuousClock.now - lastSave >= .seconds(saveInterval) else { continue }
            lastSave = ContinuousClock.now
            do {
                let n = try await runBlocking("es.local-save") { _ in try local.save() }
                logger.info("saved \(n) indices to \(local.directory)")
            } catch {
                logger.error("periodic search save failed: \(error)")
            }
        }
    }
    for await sig in stop {
        logger.info("signal \(sig): stopping")
        break
    }
    saver.cancel()
    if let local, (try? await runBlocking("es.local-save") { _ in try local.engine.indexExists(LocalSearchSave.marker) }) == true {
        // The sidecar depends on the engine, so the supervisor stops it first: the engine still answers.
        do {
            let n = try await runBlocking("es.local-save") { _ in try local.save() }
            logger.info("saved \(n) indices to \(local.directory) on stop")
        } catch {
            logger.error("search save on stop failed (the previous save is kept): \(error)")
        }
    }
    await server.shutdown()
} catch {
    logger.critical("es-sidecar-service: \(error)")
    exit(1)
}
