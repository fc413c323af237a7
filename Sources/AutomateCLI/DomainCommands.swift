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

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a team.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument var name: String
        @Option(help: "A description.") var description = ""
        @Option(name: .customLong("member"), help: "A member (repeatable).") var members: [String] = []
        func run() async throws {
            var req = Automate_Teams_V1_AddTeamRequest()
            req.name = name; req.description_p = description; req.members = members
            let team = try await DomainCall.call("teams-service", homeOptions, TeamsService.addTeam, req)
            print("Added team \(team.name) (id \(team.id), \(team.members.count) members)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List teams with their members.")
        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let r = try await DomainCall.call("teams-service", homeOptions, TeamsService.listTeams, Automate_Teams_V1_ListTeamsRequest())
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
            _ = try await DomainCall.call("teams-service", homeOptions, TeamsService.removeTeam, req)
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
            let t = try await DomainCall.call("teams-service", homeOptions, TeamsService.addMember, req)
            print("\(t.name): \(t.members.joined(separator: ", "))")
        }
    }
}

/// `automate compliance ...`: reports (PostgreSQL + search) and profiles (files) in compliance-service.
struct ComplianceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compliance", abstract: "Reports and profiles in compliance-service.",
        subcommands: [Report.self, Reports.self, Search.self, Upload.self, Profiles.self])

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a report (stored and indexed for search).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The node it is about.") var node: String
        @Argument(help: "passed, failed or skipped.") var status: String
        @Option(help: "A summary (searchable).") var summary = ""
        func run() async throws {
            var req = Automate_Compliance_V1_AddReportRequest()
            req.node = node; req.status = status; req.summary = summary
            let r = try await DomainCall.call("compliance-service", homeOptions, ComplianceService.addReport, req)
            print("Added report \(r.id) for \(r.node): \(r.status)")
        }
    }

    struct Reports: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List reports.")
        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let r = try await DomainCall.call("compliance-service", homeOptions, ComplianceService.listReports, Automate_Compliance_V1_ListReportsRequest())
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
            let r = try await DomainCall.call("compliance-service", homeOptions, ComplianceService.searchReports, req)
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
            let p = try await DomainCall.call("compliance-service", homeOptions, ComplianceService.uploadProfile, req)
            print("Uploaded profile \(p.name) (\(p.size) bytes, sha256 \(p.sha256))")
        }
    }

    struct Profiles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List profiles with sizes and sha256.")
        @OptionGroup var homeOptions: HomeOptions
        func run() async throws {
            let r = try await DomainCall.call("compliance-service", homeOptions, ComplianceService.listProfiles, Automate_Compliance_V1_ListProfilesRequest())
            for p in r.profiles { print("\(p.name)\t\(p.size)\t\(p.sha256)") }
        }
    }
}

/// One call to a domain service of the running stack, its failure as one CLI line.
enum DomainCall {
    static func call<Request, Response>(
        _ service: String, _ homeOptions: HomeOptions, _ method: RPCUnaryMethod<Request, Response>, _ request: Request
    ) async throws -> Response {
        let client = try await ServiceConnection.connect(service, home: homeOptions.resolved)
        defer { Task { await client.close() } }
        do { return try await client.call(method, request, timeout: .seconds(60)) } catch {
            throw ServiceConnection.describe(error)
        }
    }
}
