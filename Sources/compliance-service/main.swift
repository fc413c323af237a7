// compliance-service: compliance reports in its own PostgreSQL database and indexed in the stack's search
// engine, uploaded profiles as files in its data folder; a small RPC API
// (Sources/DomainAPI/Proto/compliance.proto) and the backup contract through the service kit.
import AutomateRPC
import ESSidecar
import Foundation
import ServiceKit

let logger = ServiceRuntime.bootstrapLogging("compliance-service")
let env = ProcessInfo.processInfo.environment
do {
    guard let dataDir = env["AUTOMATE_SERVICE_DATA"], !dataDir.isEmpty else {
        throw KitError(.configuration, "AUTOMATE_SERVICE_DATA is not set (start the service with automate-supervisor)")
    }
    let profiles = dataDir + "/profiles"
    try FileManager.default.createDirectory(atPath: profiles, withIntermediateDirectories: true)
    let database = ServiceDatabase(server: ServiceDatabase.server(), name: "compliance_service")
    try await database.prepare(schema: [
        """
        CREATE TABLE IF NOT EXISTS reports (
          id bigserial PRIMARY KEY, node text NOT NULL, status text NOT NULL
            CHECK (status IN ('passed', 'failed', 'skipped')),
          summary text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now())
        """,
    ])
    let search = SearchEngine(
        url: env["AUTOMATE_CFG_SEARCH_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:10144",
        access: try SearchEngine.Access(environment: env))
    let server = RPCServer(configuration: .init(socketPath: try ServiceRuntime.socketPath()), logger: logger)
    let kit = BackupKit(
        service: "compliance-service",
        owned: OwnedData(databases: ["compliance_service"], indices: [ComplianceAPI.index], paths: [OwnedPath(name: "profiles", path: profiles)]),
        config: try KitConfig.fromEnvironment(), logger: logger)
    kit.register(on: server)
    let api = ComplianceAPI(database: database, kit: kit, search: search, profilesDirectory: profiles, index: ComplianceAPI.index)
    try await api.prepareIndex()
    api.register(on: server)
    try await ServiceRuntime.serve(server, logger: logger)
} catch {
    logger.critical("compliance-service: \(error)")
    exit(1)
}
