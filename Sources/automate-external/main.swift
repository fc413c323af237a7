// automate-external: stands in for a service of the stack whose server is external
// (`<home>/config/external.toml`), with the environment the supervisor gives the services that use it.
//
//   automate-external check postgresql|search   one look: prints one line, exits 0 ok, 1 warning, 2 critical
//                                               (Habitat's health-check codes; hooks/external/health-check)
//   automate-external watch postgresql|search   the watcher's process: holds the service's place until
//                                               SIGTERM (the health check above does the looking)
import ESSidecar
import ExternalServers
import Foundation

let arguments = CommandLine.arguments
let usage = "usage: automate-external check|watch postgresql|search\n"
guard arguments.count == 3, ["check", "watch"].contains(arguments[1]), ["postgresql", "search"].contains(arguments[2]) else {
    FileHandle.standardError.write(Data(usage.utf8))
    exit(64)
}
let environment = ProcessInfo.processInfo.environment

/// One look at the server `arguments[2]` names.
func look() -> ExternalCheck {
    if arguments[2] == "postgresql" { return ExternalCheck.postgresql(environment: environment) }
    guard let url = environment["AUTOMATE_CFG_SEARCH_URL"].flatMap({ $0.isEmpty ? nil : $0 }) else {
        return ExternalCheck(.critical, "AUTOMATE_CFG_SEARCH_URL is not set: is this started by automate-supervisor from config/external.toml?")
    }
    do {
        return ExternalCheck.search(url: url, access: try SearchEngine.Access(environment: environment))
    } catch {
        return ExternalCheck(.critical, "\(error)")
    }
}

if arguments[1] == "check" {
    let result = look()
    print(result.line)
    exit(result.outcome.rawValue)
}

// watch: the process that holds the service's place in the supervisor; the health check (every 10 s,
// each line in the service's log) does the looking, so this one only waits for SIGTERM.
signal(SIGTERM, SIG_IGN)
let stop = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .main)
stop.setEventHandler { exit(0) }
stop.resume()
dispatchMain()
