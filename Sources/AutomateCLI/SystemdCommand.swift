import ArgumentParser
import AutomateManifest
import AutomateSupervisor
import Foundation
import Logging

struct SystemdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "systemd",
        abstract: "Install or remove the systemd units that run the stack.",
        subcommands: [Install.self, Uninstall.self])

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write automate.service (and the backup timer), then daemon-reload and enable.",
            discussion: """
                Writes to /etc/systemd/system (or ~/.config/systemd/user with --user). When systemd is PID 1 it \
                runs `systemctl daemon-reload` and `systemctl enable`; otherwise it prints those commands. \
                --dry-run prints the units and writes nothing.
                """)

        @OptionGroup var homeOptions: HomeOptions

        @Flag(help: "Install user units (systemctl --user) instead of system units.")
        var user = false

        @Flag(help: "Print the units; write and run nothing.")
        var dryRun = false

        @Option(help: "Add a backup timer with this OnCalendar= schedule (e.g. daily, '*-*-* 02:00:00').")
        var backupSchedule: String?

        @Option(help: "Backups the timer keeps (retention after each scheduled backup).")
        var keep: Int = 7

        @Option(help: "Write the units into this folder instead of systemd's (for packaging and tests).")
        var unitDirectory: String?

        func validate() throws {
            if !user && !dryRun && unitDirectory == nil && geteuid() != 0 {
                throw ValidationError("system units need root: run it as root, or pass --user")
            }
            if keep < 1 { throw ValidationError("--keep must be at least 1") }
        }

        func run() async throws {
            let home = homeOptions.resolved
            let location = try StackLocation.discover()
            let manifests = try location.manifests(home: home)
            let units = SystemdUnits(
                userMode: user, home: home, location: location, stopBudget: SystemdUnits.stopBudget(of: manifests),
                backupSchedule: backupSchedule, keepBackups: keep)
            let rendered = units.render()
            if dryRun {
                for (name, contents) in rendered { print("# \(name)\n\(contents)") }
                return
            }
            if !user && geteuid() == 0 && unitDirectory == nil {
                // The unit cannot write /etc (ProtectSystem=strict) nor make its ReadWritePaths: the
                // services' users and groups, and the home, are made now.
                try await SystemdCommand.prepareForUnit(home: home, manifests: manifests)
            }
            let directory = unitDirectory ?? units.directory
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (name, contents) in rendered {
                do {
                    try AtomicFile.write(contents, to: directory + "/\(name)", mode: 0o644)
                } catch {
                    throw CLIError("\(error)")
                }
                print("wrote \(directory)/\(name)")
            }
            let enable = rendered.map(\.name).filter { $0 == "automate.service" || $0.hasSuffix(".timer") }
            let commands = [["daemon-reload"], ["enable"] + enable]
            let systemctl = user ? ["systemctl", "--user"] : ["systemctl"]
            if unitDirectory == nil && SystemdCommand.systemdIsRunning() {
                for command in commands { try await SystemdCommand.runSystemctl(systemctl + command) }
                print("enabled \(enable.joined(separator: ", ")); start with: \(systemctl.joined(separator: " ")) start automate.service")
            } else {
                print("systemd is not running here; run:")
                for command in commands { print("  " + (systemctl + command).joined(separator: " ")) }
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable and remove the units `install` wrote.")

        @Flag(help: "Remove user units instead of system units.")
        var user = false

        @Option(help: "The folder the units were written to (default: systemd's).")
        var unitDirectory: String?

        func run() async throws {
            let names = ["automate-backup.timer", "automate-backup.service", "automate.service"]
            let directory = unitDirectory
                ?? (user ? (ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"] ?? (NSHomeDirectory() + "/.config")) + "/systemd/user"
                    : "/etc/systemd/system")
            let systemctl = user ? ["systemctl", "--user"] : ["systemctl"]
            let present = names.filter { FileManager.default.fileExists(atPath: directory + "/\($0)") }
            if unitDirectory == nil && SystemdCommand.systemdIsRunning() && !present.isEmpty {
                try await SystemdCommand.runSystemctl(systemctl + ["disable", "--now"] + present)
            }
            for name in present {
                try FileManager.default.removeItem(atPath: directory + "/\(name)")
                print("removed \(directory)/\(name)")
            }
            if present.isEmpty { print("no automate units in \(directory)") }
            if unitDirectory == nil && SystemdCommand.systemdIsRunning() {
                try await SystemdCommand.runSystemctl(systemctl + ["daemon-reload"])
            }
        }
    }

    /// Makes what the system unit cannot: the home folder and every service's user and groups.
    static func prepareForUnit(home: AutomateHome, manifests: ManifestSet) async throws {
        do {
            try FileManager.default.createDirectory(atPath: home.path, withIntermediateDirectories: true)
            let access = try await ServiceUsers.resolve(for: manifests, home: home, logger: Logger(label: "automate"))
            print("service users ready: \(access.values.map(\.user.name).sorted().joined(separator: ", "))")
        } catch {
            throw CLIError("cannot prepare \(home.path) and the service users: \(error)")
        }
    }

    /// True when systemd is the init system (`/run/systemd/system` exists, as sd_booted checks).
    static func systemdIsRunning() -> Bool {
        FileManager.default.fileExists(atPath: "/run/systemd/system")
    }

    static func runSystemctl(_ arguments: [String]) async throws {
        var options = ChildProcess.Options(executable: arguments[0], arguments: Array(arguments.dropFirst()),
                                           environment: ProcessInfo.processInfo.environment)
        options.standardOutput = 1
        options.standardError = 2
        options.deathSignal = 0
        let child = try ChildProcess.spawn(options)
        let status = await child.waitForExit()
        child.forget()
        guard status.isSuccess else { throw CLIError("\(arguments.joined(separator: " ")) \(status)") }
    }
}
