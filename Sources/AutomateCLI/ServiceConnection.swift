import AutomateRPC
import AutomateSupervisor
import Foundation

/// Connects to a service of the running stack on its socket in the run directory.
enum ServiceConnection {
    static func connect(_ service: String, home: AutomateHome) async throws -> RPCClient {
        let path = home.runDirectory + "/\(service).sock"
        guard FileManager.default.fileExists(atPath: path) else {
            throw CLIError("\(service) is not running for \(home.path) (no \(path)): start the stack with `automate start`, see `automate status`", exitCode: 3)
        }
        do {
            return try await RPCClient.connect(socketPath: path)
        } catch {
            throw CLIError("\(service) does not answer on \(path): \(error); see `automate status` and `automate logs \(service)`", exitCode: 3)
        }
    }

    /// An RPC error as one CLI line, keeping the server's status name.
    static func describe(_ error: Error) -> CLIError {
        if let e = error as? CLIError { return e }
        if let e = error as? RPCError { return CLIError("\(e.code): \(e.message)", exitCode: e.code == .notFound ? 4 : 1) }
        return CLIError("\(error)")
    }
}
