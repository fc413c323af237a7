import ArgumentParser
import AutomateManifest
import AutomateSupervisor
import Foundation

struct Psql: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open psql on the stack's PostgreSQL as its superuser.",
        discussion: """
            Connects over the Unix socket in <home>/run, or to the external server of <home>/config/external.toml \
            (its host, port, user, sslmode, CA and password). Example: automate psql teams -- -c 'select 1'
            """)

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
        if postgres.external == .postgresql, let external = try ManifestLoader.externalSettings(home: home)?.postgresql {
            try execute(Self.psqlPath(bindir: postgres.config["bindir"]?.description ?? "/usr/lib/postgresql/15/bin"),
                        ["-h", external.host, "-p", String(external.port), "-U", external.user, "-d", database] + psqlArguments,
                        environment: ProcessInfo.processInfo.environment.merging(try CLIError.reporting { try external.operatorEnvironment() }) { $1 })
        }
        let port = postgres.config["port"]?.description ?? "5432"
        let superuser = postgres.config["superuser"]?.description ?? "automate"
        let bindir = postgres.config["bindir"]?.description ?? "/usr/bin"
        try execute(Self.psqlPath(bindir: bindir), ["-h", home.runDirectory, "-p", port, "-U", superuser, "-d", database] + psqlArguments)
    }

    static func psqlPath(bindir: String) -> String {
        FileManager.default.isExecutableFile(atPath: bindir + "/psql") ? bindir + "/psql" : "/usr/bin/psql"
    }
}
