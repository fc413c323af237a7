import ArgumentParser
import AutomateSupervisor
import Foundation

/// `automate`: the operator's command for the whole stack.
public struct AutomateCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "automate",
        abstract: "Run an automate stack: start, stop and inspect its services.",
        discussion: """
            The stack lives in its home: $AUTOMATE_HOME, else /var/opt/automate as root, else \
            $XDG_DATA_HOME/automate (~/.local/share/automate).
            """,
        subcommands: [Start.self, Stop.self, Status.self, Restart.self, Reload.self, Logs.self, Events.self, Psql.self, BackupCommand.self, GatewayCommand.self, SystemdCommand.self, RestoreCommand.self, TeamsCommand.self, ComplianceCommand.self])

    public init() {}

    /// Runs the command and turns ``CLIError`` into a message and exit code.
    public static func runCLI() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("automate: \(error.message)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            exit(withError: error)
        }
    }
}

/// Options every stack command takes.
struct HomeOptions: ParsableArguments {
    @Option(name: .long, help: "The stack's home (overrides $AUTOMATE_HOME).")
    var home: String?

    var resolved: AutomateHome {
        home.map { AutomateHome(path: $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0) }
            ?? AutomateHome.resolve()
    }
}
