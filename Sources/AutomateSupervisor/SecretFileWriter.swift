import AutomateManifest
import Foundation

/// Writes a service's copies of the operator's secret files (``SecretFileCopy``): read afresh before each
/// start (a password the operator changed reaches the service at its next start), written atomically,
/// 0400 and owned by the service's user.
enum SecretFileWriter {
    /// Writes `copy` for `owner` (nil: the supervisor's user keeps it).
    static func write(_ copy: SecretFileCopy, owner: ServiceUser?) throws {
        let source: String
        do {
            source = try String(contentsOfFile: copy.source, encoding: .utf8)
        } catch {
            throw SupervisorError(.filesystem, "cannot read \(copy.source) (config/external.toml): \(error.localizedDescription)")
        }
        let firstLine = source.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).first.map(String.init) ?? ""
        func needLine() throws {
            if firstLine.isEmpty { throw SupervisorError(.filesystem, "\(copy.source) (config/external.toml) is empty: its first line must be the secret") }
        }
        let text: String
        switch copy.format {
        case .verbatim:
            text = source
        case .pgpass(let user):
            try needLine()
            // libpq's password file: host:port:database:user:password, with `\` and `:` escaped.
            func escaped(_ s: String) -> String { s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ":", with: "\\:") }
            text = "*:*:*:\(escaped(user)):\(escaped(firstLine))\n"
        case .basicAuthorization(let user):
            try needLine()
            text = "Basic " + Data("\(user):\(firstLine)".utf8).base64EncodedString() + "\n"
        case .apiKeyAuthorization:
            try needLine()
            text = "ApiKey \(firstLine)\n"
        }
        try AtomicFile.write(text, to: copy.destination, mode: 0o400, owner: owner)
    }
}
