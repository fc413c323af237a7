// teams-service: teams and their members in its own PostgreSQL database, a small RPC API
// (Sources/DomainAPI/Proto/teams.proto) and the backup contract through the service kit.
import AutomateRPC
import DomainAPI
import Foundation
import ServiceKit

let logger = ServiceRuntime.bootstrapLogging("teams-service")
do {
    let database = ServiceDatabase(server: ServiceDatabase.server(), name: "teams_service")
    try await database.prepare(schema: [
        """
        CREATE TABLE IF NOT EXISTS teams (
          id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, description text NOT NULL DEFAULT '',
          created_at timestamptz NOT NULL DEFAULT now())
        """,
        """
        CREATE TABLE IF NOT EXISTS members (
          team_id bigint NOT NULL REFERENCES teams(id) ON DELETE CASCADE, member text NOT NULL,
          PRIMARY KEY (team_id, member))
        """,
    ])
    let server = RPCServer(configuration: .init(socketPath: try ServiceRuntime.socketPath()), logger: logger)
    let kit = BackupKit(service: "teams-service", owned: OwnedData(databases: ["teams_service"]),
                        config: try KitConfig.fromEnvironment(), logger: logger)
    kit.register(on: server)
    TeamsAPI(database: database, kit: kit).register(on: server)
    try await ServiceRuntime.serve(server, logger: logger)
} catch {
    logger.critical("teams-service: \(error)")
    exit(1)
}
