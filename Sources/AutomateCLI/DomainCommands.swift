import ArgumentParser
import AutomateRPC
import DomainAPI
import Foundation
import SwiftProtobuf

/// `automate teams ...`: put data into and read it from teams-service.
struct TeamsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teams", abstract: "Teams and members in teams-service (add, list, remove, add-member).",
        subcommands: [Add.self, List.self, Remove.self, AddMember.self])
    static let method = "automate.teams.v1.Teams/"

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a team.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument var name: String
        @Option(help: "A description.") var description = ""
        @Option(name: .customLong("member"), help: "A member (repeatable).") var members: [String] = []
        func run() async throws {
            var req = Automate_Teams_V1_AddTeamRequest()
            req.name = name; req.description_p = description; req.members = members
            let team = try await DomainCall.unary("teams-service", homeOptions, method + "AddTeam", req, as: Automate_Teams_V1_Team.self)
            print("Added team \(team.name) (id \(team.id), \(team.members.count) members)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List teams with their members.")
        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let r = try await DomainCall.unary("teams-service", homeOptions, method + "ListTeams", Automate_Teams_V1_ListTeamsRequest(),
                                               as: Automate_Teams_V1_ListTeamsResponse.self)
            if json { print(try r.jsonString()); return }
            for t in r.teams { print("\(t.name)\t\(t.members.joined(separator: ","))\t\(t.description_p)") }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a team.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument var name: String
        func run() async throws {
            var req = Automate_Teams_V1_RemoveTeamRequest()
            req.name = name
            _ = try await DomainCall.unary("teams-service", homeOptions, method + "RemoveTeam", req, as: Automate_Teams_V1_RemoveTeamResponse.self)
            print("Removed team \(name)")
        }
    }

    struct AddMember: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add-member", abstract: "Add a member to a team.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument var team: String
        @Argument var member: String
        func run() async throws {
            var req = Automate_Teams_V1_AddMemberRequest()
            req.team = team; req.member = member
            let t = try await DomainCall.unary("teams-service", homeOptions, method + "AddMember", req, as: Automate_Teams_V1_Team.self)
            print("\(t.name): \(t.members.joined(separator: ", "))")
        }
    }
}

/// `automate compliance ...`: reports (PostgreSQL + search) and profiles (files) in compliance-service.
struct ComplianceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compliance", abstract: "Reports and profiles in compliance-service.",
        subcommands: [Report.self, Reports.self, Search.self, Upload.self, Profiles.self])
    static let method = "automate.compliance.v1.Compliance/"

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a report (stored and indexed for search).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The node it is about.") var node: String
        @Argument(help: "passed, failed or skipped.") var status: String
        @Option(help: "A summary (searchable).") var summary = ""
        func run() async throws {
            var req = Automate_Compliance_V1_AddReportRequest()
            req.node = node; req.status = status; req.summary = summary
            let r = try await DomainCall.unary("compliance-service", homeOptions, method + "AddReport", req, as: Automate_Compliance_V1_Report.self)
            print("Added report \(r.id) for \(r.node): \(r.status)")
        }
    }

    struct Reports: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List reports.")
        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let r = try await DomainCall.unary("compliance-service", homeOptions, method + "ListReports", Automate_Compliance_V1_ListReportsRequest(),
                                               as: Automate_Compliance_V1_ListReportsResponse.self)
            if json { print(try r.jsonString()); return }
            for x in r.reports { print("\(x.id)\t\(x.node)\t\(x.status)\t\(x.summary)") }
        }
    }

    struct Search: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Search reports' summaries (through the search engine).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument var query: String = ""
        func run() async throws {
            var req = Automate_Compliance_V1_SearchReportsRequest()
            req.query = query
            let r = try await DomainCall.unary("compliance-service", homeOptions, method + "SearchReports", req,
                                               as: Automate_Compliance_V1_ListReportsResponse.self)
            for x in r.reports { print("\(x.id)\t\(x.node)\t\(x.status)\t\(x.summary)") }
        }
    }

    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "upload-profile", abstract: "Upload a profile file.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The file.") var file: String
        @Option(help: "Its name in the service (default: the file's name).") var name: String?
        func run() async throws {
            guard let content = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
            var req = Automate_Compliance_V1_UploadProfileRequest()
            req.name = name ?? (file as NSString).lastPathComponent
            req.content = content
            let p = try await DomainCall.unary("compliance-service", homeOptions, method + "UploadProfile", req, as: Automate_Compliance_V1_Profile.self)
            print("Uploaded profile \(p.name) (\(p.size) bytes, sha256 \(p.sha256))")
        }
    }

    struct Profiles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List profiles with sizes and sha256.")
        @OptionGroup var homeOptions: HomeOptions
        func run() async throws {
            let r = try await DomainCall.unary("compliance-service", homeOptions, method + "ListProfiles", Automate_Compliance_V1_ListProfilesRequest(),
                                               as: Automate_Compliance_V1_ListProfilesResponse.self)
            for p in r.profiles { print("\(p.name)\t\(p.size)\t\(p.sha256)") }
        }
    }
}

enum DomainCall {
    static func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ service: String, _ homeOptions: HomeOptions, _ method: String, _ request: Request, as: Response.Type
    ) async throws -> Response {
        let client = try await ServiceConnection.connect(service, home: homeOptions.resolved)
        defer { Task { await client.close() } }
        do { return try await client.unary(method, request, as: Response.self, timeout: .seconds(60)) } catch {
            throw ServiceConnection.describe(error)
        }
    }
}
