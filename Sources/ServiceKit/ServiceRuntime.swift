import AutomateRPC
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The life of a small supervised service: log to stderr (the supervisor captures it), serve on
/// `AUTOMATE_SERVICE_SOCKET`, stop on SIGTERM or SIGINT.
public enum ServiceRuntime {
    /// A logger writing to stderr at info level.
    public static func bootstrapLogging(_ label: String) -> Logger {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .info
            return h
        }
        return Logger(label: label)
    }

    /// The socket the supervisor gave this service.
    public static func socketPath() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["AUTOMATE_SERVICE_SOCKET"], !path.isEmpty else {
            throw KitError(.configuration, "AUTOMATE_SERVICE_SOCKET is not set: give the manifest a `socket` and start it with automate-supervisor")
        }
        return path
    }

    /// Starts `server`, waits for SIGTERM/SIGINT, shuts it down.
    public static func serve(_ server: RPCServer, logger: Logger) async throws {
        signal(SIGPIPE, SIG_IGN)
        let (stop, stopRequested) = AsyncStream<Int32>.makeStream()
        let watcher = SignalWatcher(signals: [SIGTERM, SIGINT]) { stopRequested.yield($0) }
        try await server.start()
        logger.info("listening on \(server.configuration.socketPath)")
        for await sig in stop {
            logger.info("signal \(sig): stopping")
            break
        }
        watcher.cancel()
        await server.shutdown()
    }
}
