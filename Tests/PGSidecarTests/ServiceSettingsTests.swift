import ESSidecar
import Foundation
import PGSidecar
import ServiceKit
import ServiceSettings
import Testing

/// Every service reads its settings with one set of checks: a value that does not parse is an error
/// naming the key, the value and where to fix it; an unset value takes the default.
@Suite("Service settings")
struct ServiceSettingsTests {
    /// The gateway's key pair reaches a service as a file, as the supervisor writes it.
    static let keyFile: String = {
        let path = NSTemporaryDirectory() + "settings-tests-\(getpid()).gateway.credentials"
        try! "access_key_id = \"id\"\nsecret_access_key = \"secret\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()
    static let base: [String: String] = [
        "AUTOMATE_SERVICE": "pg-sidecar-service", "AUTOMATE_SERVICE_SOCKET": "/run/x.sock", "AUTOMATE_RUN_DIR": "/run",
        "AUTOMATE_GATEWAY_ENDPOINT": "http://127.0.0.1:9", "AUTOMATE_GATEWAY_CREDENTIALS_FILE": keyFile,
        "AUTOMATE_GATEWAY_BUCKET": "repo",
    ]

    @Test("defaults apply to unset and empty values; set values are used")
    func defaultsAndValues() throws {
        var env = Self.base
        env["AUTOMATE_CFG_PART_SIZE_MIB"] = ""
        let plain = try PGSidecarConfig.fromEnvironment(env)
        #expect(plain.partSize == 8 << 20 && plain.zstdLevel == 1 && plain.server.port == 5432 && plain.bucket == "repo")
        #expect(plain.restoreMaintenanceWorkMem == "256MB")
        #expect(plain.restoreConnections == min(4, max(2, ProcessInfo.processInfo.activeProcessorCount)))
        env["AUTOMATE_CFG_PART_SIZE_MIB"] = "16"
        env["AUTOMATE_CFG_ZSTD_LEVEL"] = "3"
        env["AUTOMATE_CFG_PG_PORT"] = "10145"
        env["AUTOMATE_CFG_RESTORE_MAINTENANCE_WORK_MEM"] = "1GB"
        env["AUTOMATE_CFG_RESTORE_CONNECTIONS"] = "1"
        let set = try PGSidecarConfig.fromEnvironment(env)
        #expect(set.partSize == 16 << 20 && set.zstdLevel == 3 && set.server.port == 10145 && set.restoreMaintenanceWorkMem == "1GB")
        #expect(set.restoreConnections == 1)
    }

    @Test("a value that does not parse names the key, the value, the service and where to fix it", arguments: [
        ("PART_SIZE_MIB", "8x", "part_size_mib"), ("PART_SIZE_MIB", "2", "part_size_mib"), ("ZSTD_LEVEL", "fast", "zstd_level"),
        ("PG_PORT", "70000", "pg_port"), ("RESTORE_MAINTENANCE_WORK_MEM", "lots", "restore_maintenance_work_mem"),
        ("RESTORE_CONNECTIONS", "0", "restore_connections"), ("RESTORE_CONNECTIONS", "many", "restore_connections"),
    ])
    func invalidValues(variable: String, value: String, key: String) throws {
        var env = Self.base
        env["AUTOMATE_CFG_" + variable] = value
        let error = try #require(throws: SettingsError.self) { try PGSidecarConfig.fromEnvironment(env) }
        #expect(error.code == .invalid)
        #expect(error.message.contains("config \(key) = \"\(value)\""), "\(error.message)")
        #expect(error.message.contains("services/pg-sidecar-service.toml") && error.message.contains("<home>/config/pg-sidecar-service.toml"))
    }

    @Test("the es-sidecar, the kit and the deployment-service read theirs the same way")
    func otherServices() throws {
        var env = Self.base
        env["AUTOMATE_SERVICE"] = "es-sidecar-service"
        env["AUTOMATE_CFG_SEARCH_URL"] = "http://127.0.0.1:9200"
        env["AUTOMATE_CFG_MODE"] = "snapshots"
        let mode = try #require(throws: SettingsError.self) { try ESSidecarConfig.fromEnvironment(env) }
        #expect(mode.message.contains("config mode = \"snapshots\"") && mode.message.contains("\"export\" or \"snapshot\""), "\(mode.message)")
        env["AUTOMATE_CFG_MODE"] = nil
        env["AUTOMATE_CFG_EXTERNAL"] = "yes"
        let external = try #require(throws: SettingsError.self) { try ESSidecarConfig.fromEnvironment(env) }
        #expect(external.message.contains("config external = \"yes\"") && external.message.contains("true or false"))
        env["AUTOMATE_CFG_EXTERNAL"] = "true"
        #expect(try ESSidecarConfig.fromEnvironment(env).mode == .snapshot)

        var kit = Self.base
        kit["AUTOMATE_CFG_ZSTD_LEVEL"] = "20"
        #expect(throws: SettingsError.self) { try KitConfig.fromEnvironment(kit) }
        kit["AUTOMATE_CFG_ZSTD_LEVEL"] = nil
        kit["AUTOMATE_GATEWAY_ENDPOINT"] = nil
        let missing = try #require(throws: SettingsError.self) { try KitConfig.fromEnvironment(kit) }
        #expect(missing.code == .missing && missing.message.contains("AUTOMATE_GATEWAY_ENDPOINT") && missing.message.contains("[backup] gateway = true"))
    }
}
