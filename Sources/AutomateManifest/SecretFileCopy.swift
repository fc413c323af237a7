import Foundation

/// A file the supervisor copies for one service before each of its starts, owned by the service's user
/// and readable by it alone (0400), so that a secret the operator keeps root's (0600) reaches exactly the
/// services that need it and never an environment.
public struct SecretFileCopy: Sendable, Equatable {
    /// What the copy holds.
    public enum Format: Sendable, Equatable {
        /// The source's bytes.
        case verbatim
        /// A libpq password file (`PGPASSFILE`) for `user`: `*:*:*:<user>:<password>`, the password being
        /// the source's first line.
        case pgpass(user: String)
        /// An HTTP `Authorization` value: `Basic <base64(user:password)>` (the source's first line is the
        /// password).
        case basicAuthorization(user: String)
        /// An HTTP `Authorization` value: `ApiKey <key>` (the source's first line).
        case apiKeyAuthorization
    }

    /// The operator's file.
    public var source: String
    /// The service's copy.
    public var destination: String
    public var format: Format

    public init(source: String, destination: String, format: Format) {
        self.source = source
        self.destination = destination
        self.format = format
    }

    /// Why an operator's secret file cannot be used: its path and the reason, to say as is.
    public struct ReadError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The secret in `path`: its first line, which must not be empty.
    public static func secret(inFile path: String) throws(ReadError) -> String {
        let line = try text(of: path).split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).first.map(String.init) ?? ""
        if line.isEmpty { throw ReadError(description: "\(path) (config/external.toml) is empty: its first line must be the secret") }
        return line
    }

    /// What the service's copy holds, read from the operator's file now.
    public func contents() throws(ReadError) -> String {
        switch format {
        case .verbatim:
            return try Self.text(of: source)
        case .pgpass(let user):
            // libpq's password file: host:port:database:user:password, with `\` and `:` escaped.
            func escaped(_ s: String) -> String { s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ":", with: "\\:") }
            return "*:*:*:\(escaped(user)):\(escaped(try Self.secret(inFile: source)))\n"
        case .basicAuthorization(let user):
            return "Basic " + Data("\(user):\(try Self.secret(inFile: source))".utf8).base64EncodedString() + "\n"
        case .apiKeyAuthorization:
            return "ApiKey \(try Self.secret(inFile: source))\n"
        }
    }

    private static func text(of path: String) throws(ReadError) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ReadError(description: "cannot read \(path) (config/external.toml): \(error.localizedDescription)")
        }
    }
}
