import AutomateRPC
import DomainAPI
import Foundation
import DataTools
import ServiceKit

/// The teams API: add, list, remove teams and add members, stored in the service's own database.
struct TeamsAPI: Sendable {
    let database: ServiceDatabase
    /// Refuses calls while a restore replaces the data.
    let kit: BackupKit

    func register(on server: RPCServer) {
        server.register(TeamsService.addTeam) { req, _ in
            try await kit.requireReady()
            let name = req.name.trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, name.count <= 100 else { throw RPCError(.invalidArgument, "a team name is 1 to 100 characters") }
            let rows: [[String?]]
            do {
                rows = try await database.query(
                    "INSERT INTO teams (name, description) VALUES ($1, $2) RETURNING id", [name, req.description_p])
            } catch let e as DataToolsError where e.sqlState == "23505" {
                throw RPCError(.alreadyExists, "a team named \"\(name)\" exists")
            }
            let id: String = (rows.first?[0] ?? nil) ?? "0"
            for member in req.members where !member.isEmpty {
                try await database.query("INSERT INTO members (team_id, member) VALUES ($1, $2) ON CONFLICT DO NOTHING", [id, member])
            }
            return try await team(named: name)
        }
        server.register(TeamsService.listTeams) { _, _ in
            try await kit.requireReady()
            var r = Automate_Teams_V1_ListTeamsResponse()
            let rows = try await database.query("SELECT name FROM teams ORDER BY name")
            for row in rows { r.teams.append(try await team(named: row[0] ?? "")) }
            return r
        }
        server.register(TeamsService.removeTeam) { req, _ in
            try await kit.requireReady()
            let rows = try await database.query("DELETE FROM teams WHERE name = $1 RETURNING id", [req.name])
            guard !rows.isEmpty else { throw RPCError(.notFound, "no team named \"\(req.name)\"") }
            var r = Automate_Teams_V1_RemoveTeamResponse()
            r.removed = true
            return r
        }
        server.register(TeamsService.addMember) { req, _ in
            try await kit.requireReady()
            guard !req.member.isEmpty else { throw RPCError(.invalidArgument, "member is empty") }
            let rows = try await database.query(
                "INSERT INTO members (team_id, member) SELECT id, $2 FROM teams WHERE name = $1 ON CONFLICT DO NOTHING RETURNING team_id",
                [req.team, req.member])
            if rows.isEmpty, try await database.query("SELECT 1 FROM teams WHERE name = $1", [req.team]).isEmpty {
                throw RPCError(.notFound, "no team named \"\(req.team)\"")
            }
            return try await team(named: req.team)
        }
    }

    func team(named name: String) async throws -> Automate_Teams_V1_Team {
        let rows = try await database.query(
            "SELECT id, name, description, (extract(epoch FROM created_at) * 1000)::bigint FROM teams WHERE name = $1", [name])
        guard let row = rows.first else { throw RPCError(.notFound, "no team named \"\(name)\"") }
        var team = Automate_Teams_V1_Team()
        team.id = Int64(row[0] ?? "") ?? 0
        team.name = row[1] ?? ""
        team.description_p = row[2] ?? ""
        team.createdAtUnixMs = Int64(row[3] ?? "") ?? 0
        team.members = try await database.query("SELECT member FROM members WHERE team_id = $1 ORDER BY member", [String(team.id)]).compactMap { $0[0] }
        return team
    }
}
