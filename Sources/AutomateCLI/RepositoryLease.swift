import AutomateRPC
import AutomateSupervisor
import BackupRepository
import Foundation

/// A repository lent to one restore: while the restore reads it, the gateway's overlay points at it and
/// the stack's own overlay is kept aside (``BorrowedRepository/markerPath(home:)``); when the restore
/// ends, the own overlay is put back and the stack reloaded onto it (the gateway restarts). The stack's repository setting
/// is the same before and after.
struct RepositoryLease {
    let home: AutomateHome
    /// The gateway's service name (its overlay is `<home>/config/<name>.toml`).
    let gateway: String

    private var marker: String { BorrowedRepository.markerPath(home: home.path) }
    private var overlay: String { home.configOverlayPath(service: gateway) }

    /// Keeps the own overlay aside (unless an interrupted restore already did: what it kept is the own
    /// one) and points the gateway at the lent repository (`values`: `[config]` keys of its overlay).
    static func begin(home: AutomateHome, gateway: String, values: [String: String]) throws -> RepositoryLease {
        let lease = RepositoryLease(home: home, gateway: gateway)
        if !FileManager.default.fileExists(atPath: lease.marker) {
            let own = (try? String(contentsOfFile: lease.overlay, encoding: .utf8)) ?? ""
            try FileManager.default.createDirectory(atPath: home.configDirectory, withIntermediateDirectories: true)
            try AtomicFile.write(own, to: lease.marker, mode: 0o644)
        }
        try GatewayRepositoryOverlay.set(home: home, gateway: gateway, values)
        return lease
    }

    /// Puts the own overlay back and, when the stack runs, reloads it (the gateway restarts onto it).
    func end() async throws {
        guard let own = try? String(contentsOfFile: marker, encoding: .utf8) else {
            throw CLIError("\(marker) is gone: the gateway's overlay \(overlay) may still point at the repository the restore read; check it")
        }
        if own.isEmpty {
            unlink(overlay)
        } else {
            try AtomicFile.write(own, to: overlay, mode: 0o644)
        }
        // Gone only once the gateway serves the own repository again (the deployment-service waits for
        // it): after the reload, or at once when no stack runs. A failed reload keeps it.
        guard SupervisorLock.holder(path: home.lockFilePath) != nil else {
            unlink(marker)
            return
        }
        // A reload: the supervisor re-reads the overlay and restarts the gateway (and any service whose
        // gateway settings, such as the bucket, changed with it).
        let client = try await SupervisorClient.connect(home: home)
        defer { Task { await client.close() } }
        do {
            _ = try await client.rpc.call(SupervisorService.reload, ControlService.ReloadRequest(), timeout: .seconds(900))
        } catch {
            throw CLIError("the gateway's overlay is the stack's own again, but reloading the stack onto it failed: \(error); run `automate reload`, then remove \(marker)")
        }
        unlink(marker)
    }
}
