/// One value of a manifest's `[config]` table.
///
/// Config values are handed to hooks as `AUTOMATE_CFG_<KEY upper-cased>` environment variables and can be
/// used in the manifest as `${cfg.<key>}`. Both use ``description``.
public enum ConfigValue: Sendable, Equatable, CustomStringConvertible {
    /// A TOML string, used verbatim.
    case string(String)
    /// A TOML integer, rendered in decimal (`10145`).
    case integer(Int)
    /// A TOML boolean, rendered as `true` or `false`.
    case boolean(Bool)
    /// A TOML float, rendered with Swift's shortest round-tripping form (`0.5`, `1.0`).
    case double(Double)

    /// How the value appears in the environment and in `${cfg.<key>}` expansion.
    public var description: String {
        switch self {
        case .string(let s): return s
        case .integer(let i): return String(i)
        case .boolean(let b): return b ? "true" : "false"
        case .double(let d): return String(d)
        }
    }

    /// The TOML type name, as used in error messages (`string`, `integer`, `boolean`, `float`).
    public var typeName: String {
        switch self {
        case .string: return "string"
        case .integer: return "integer"
        case .boolean: return "boolean"
        case .double: return "float"
        }
    }
}
