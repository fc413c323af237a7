import ArgumentParser
import AutomateSupervisor
import Foundation

/// `automate-supervisor`: runs one stack's services. Usually started by `automate start`; run it
/// directly (with `--foreground`) under systemd or in a container.
@main
struct SupervisorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "automate-supervisor",
        abstract: "Start, watch and stop every service of an automate stack.",
        discussion: """
            Reads the manifests in --services, runs each service as a child process (in dependency order, \
            restarting crashed ones with backoff), serves its control socket in <home>/run, and stops \
            everything on SIGTERM or SIGINT.
            """)

    @Option(help: "The stack's home (default: $AUTOMATE_HOME, /var/opt/automate as root, else $XDG_DATA_HOME/automate).")
    var home: String?

    @Option(help: "Folder of service manifests (*.toml).")
    var services: String

    @Option(help: "Folder of hooks, one folder per service.")
    var hooks: String

    @Option(help: "Folder of the stack's own executables (put on services' PATH).")
    var binDir: String

    @Option(help: "Extra folders put first on services' PATH (Python tools such as osmem-server); repeatable.")
    var toolsDir: [String] = []

    @Flag(help: "Also log to stderr (for systemd and containers).")
    var foreground = false

    @Option(help: "Write one readiness line to this descriptor once the control socket is up, then close it.")
    var readyFd: Int32?

    @Option(help: "Where service output goes: file (<home>/logs) or journal (default: journal when stderr is the journal, as under systemd).")
    var logTarget: String?

    @Option(help: ArgumentHelp("Start only this service and what it depends on; the others stay held until started by name (a restore does this). Repeatable.", visibility: .hidden))
    var startOnly: [String] = []

    func validate() throws {
        if let logTarget, LogTarget(rawValue: logTarget) == nil {
            throw ValidationError("--log-target must be file or journal, not \"\(logTarget)\"")
        }
    }

    func run() async throws {
        let home = self.home.map { AutomateHome(path: $0) } ?? AutomateHome.resolve()
        let daemon = SupervisorDaemon(options: .init(
            home: home, servicesDirectory: absolute(services), hooksDirectory: absolute(hooks),
            binDirectory: absolute(binDir), toolsDirectories: toolsDir.map(absolute),
            foreground: foreground, readyDescriptor: readyFd))
        var options = daemon.options
        options.logTarget = logTarget.flatMap(LogTarget.init(rawValue:))
        options.startOnly = startOnly.isEmpty ? nil : startOnly
        let code = await SupervisorDaemon(options: options).run()
        if code != 0 { throw ExitCode(code) }
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}
