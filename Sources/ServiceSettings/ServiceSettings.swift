import AutomateErrors
import Foundation
import S3Client

/// The codes of ``SettingsError``.
public struct SettingsErrorCode: ErrorCode {
    private enum Value: String { case missing, invalid }
    private let value: Value
    /// A variable the supervisor sets is not set: the process was not started by `automate-supervisor`,
    /// or its manifest lacks what gives it.
    public static let missing = SettingsErrorCode(value: .missing)
    /// A `[config]` value does not parse or is out of range.
    public static let invalid = SettingsErrorCode(value: .invalid)
    public var description: String { value.rawValue }
}

/// A service's settings could not be read; the message names the key, the value and what is allowed.
public typealias SettingsError = CodedError<SettingsErrorCode>

/// What the supervisor hands a service at start: its environment (`AUTOMATE_SERVICE`, `AUTOMATE_RUN_DIR`,
/// the gateway's `AUTOMATE_GATEWAY_*`) and its manifest's `[config]` values, each as `AUTOMATE_CFG_<KEY>`
/// (operator overlays in `<home>/config/<service>.toml` included).
///
/// Every typed read fails on a value that does not parse, naming the key, the value and the manifest
/// section it comes from; an unset or empty value is nil (the caller's default applies). One reader for
/// every service, so that `part_size_mib = "8x"` is an error everywhere rather than silently the default.
public struct ServiceSettings: Sendable {
    /// The variables read.
    public let environment: [String: String]

    public init(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// The service's name (`AUTOMATE_SERVICE`), or "the service" outside the supervisor.
    public var service: String { variable("AUTOMATE_SERVICE") ?? "the service" }

    /// A variable's value; nil when unset or empty.
    public func variable(_ name: String) -> String? {
        environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A variable the supervisor sets; `hint` says what gives it when it is missing.
    public func required(_ name: String, hint: String = "start the service with automate-supervisor") throws -> String {
        guard let v = variable(name) else { throw SettingsError(.missing, "\(name) is not set: \(hint)") }
        return v
    }

    /// The `[config]` value of `key` (`part_size_mib` is read from `AUTOMATE_CFG_PART_SIZE_MIB`); nil when
    /// unset or empty.
    public func string(_ key: String) -> String? { variable(Self.variableName(key)) }

    /// A whole number in `range`; nil when unset.
    public func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = string(key) else { return nil }
        guard let n = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(n) else {
            throw invalid(key, text, "a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return n
    }

    /// `true` or `false`; nil when unset.
    public func bool(_ key: String) throws -> Bool? {
        guard let text = string(key) else { return nil }
        switch text.lowercased() {
        case "true": return true
        case "false": return false
        default: throw invalid(key, text, "true or false")
        }
    }

    /// One of `allowed`; nil when unset.
    public func choice(_ key: String, _ allowed: [String]) throws -> String? {
        guard let text = string(key) else { return nil }
        guard allowed.contains(text) else { throw invalid(key, text, allowed.map { "\"\($0)\"" }.joined(separator: " or ")) }
        return text
    }

    /// A value matching `pattern` (described for people as `what`); nil when unset.
    public func matching(_ key: String, _ pattern: Regex<Substring>, _ what: String) throws -> String? {
        guard let text = string(key) else { return nil }
        guard text.wholeMatch(of: pattern) != nil else { throw invalid(key, text, what) }
        return text
    }

    /// The repository a service writes to and reads from: the `[config]` keys `s3_endpoint`, `s3_region`,
    /// `s3_bucket` and `s3_credentials` (a key-pair file) when set, else the gateway the supervisor hands
    /// it (`AUTOMATE_GATEWAY_*`, given by `[backup] gateway = true`, the key pair in the file
    /// `AUTOMATE_GATEWAY_CREDENTIALS_FILE` names).
    public func repository() throws -> (client: S3Client, bucket: String) {
        func gateway(_ k: String) -> String? { variable("AUTOMATE_GATEWAY_" + k) }
        guard let endpoint = string("s3_endpoint") ?? gateway("ENDPOINT") else {
            throw SettingsError(.missing, "\(service) has no S3 endpoint: set config s3_endpoint, or give it `[backup] gateway = true` in its manifest")
        }
        var credentials: S3Credentials? = nil
        if let path = string("s3_credentials") ?? gateway("CREDENTIALS_FILE") {
            credentials = try Self.loadCredentials(path, service: service)
        }
        let client = S3Client(endpoint: endpoint, region: string("s3_region") ?? gateway("REGION") ?? "us-east-1", credentials: credentials)
        return (client, string("s3_bucket") ?? gateway("BUCKET") ?? "backups")
    }

    /// Reads a key-pair file (the gateway's copy for this service, or `s3_credentials`); the error names
    /// the file and what to do.
    public static func loadCredentials(_ path: String, service: String) throws -> S3Credentials {
        do {
            return try S3Credentials.load(path: path)
        } catch {
            throw SettingsError(.invalid, "\(service) cannot read its S3 key pair from \(path) (\(error)): the supervisor writes it before each start; restart the service, or fix config s3_credentials")
        }
    }

    /// `AUTOMATE_CFG_<KEY upper-cased>`, as the supervisor names a config key.
    public static func variableName(_ key: String) -> String { "AUTOMATE_CFG_" + key.uppercased() }

    private func invalid(_ key: String, _ value: String, _ allowed: String) -> SettingsError {
        SettingsError(.invalid,
            "config \(key) = \"\(value)\" of \(service) is not \(allowed): fix it in the manifest's [config] (services/\(service).toml) or the operator's overlay (<home>/config/\(service).toml) and restart the service")
    }
}
