import ArgumentParser
import AutomateManifest
import AutomateSupervisor
import Foundation

struct Psql: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open psql on the stack's PostgreSQL as its superuser.",
        discussion: "Connects over the Unix socket in <home>/run. Example: automate psql teams -- -c 'select 1'")

    @OptionGroup var homeOptions: HomeOptions

    @Argument(help: "Database (default: postgres).")
    var database: String = "postgres"

    @Argument(parsing: .postTerminator, help: "Arguments passed to psql after `--`.")
    var psqlArguments: [String] = []

    static let serviceName = "automate-postgresql"

    func run() async throws {
        let home = homeOptions.resolved
        let location = try StackLocation.discover()
        let manifests = try location.manifests(home: home)
        guard let postgres = manifests.manifest(named: Self.serviceName) else {
            throw CLIError("this stack has no \(Self.serviceName) service")
        }
        let port = postgres.config["port"]?.description ?? "5432"
        let superuser = postgres.config["superuser"]?.description ?? "automate"
        let bindir = postgres.config["bindir"]?.description ?? "/usr/bin"
        let psql = FileManager.default.isExecutableFile(atPath: bindir + "/psql") ? bindir + "/psql" : "/usr/bin/psql"
        try execute(psql, ["-h", home.runDirectory, "-p", port, "-U", superuser, "-d", database] + psqlArguments)
    }
}
