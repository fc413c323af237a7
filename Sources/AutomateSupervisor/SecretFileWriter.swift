import AutomateManifest
import Foundation

/// Writes a service's copies of the operator's secret files (``SecretFileCopy``): read afresh before each
/// start (a password the operator changed reaches the service at its next start), written atomically,
/// 0400 and owned by the service's user.
enum SecretFileWriter {
    /// Writes `copy` for `owner` (nil: the supervisor's user keeps it).
    static func write(_ copy: SecretFileCopy, owner: ServiceUser?) throws {
        let text: String
        do {
            text = try copy.contents()
        } catch {
            throw SupervisorError(.filesystem, error.description)
        }
        try AtomicFile.write(text, to: copy.destination, mode: 0o400, owner: owner)
    }
}
