import ArgumentParser
import AutomateRPC
import AutomateSupervisor
import Foundation

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the manifests: restart only the services whose manifest changed, start added ones, stop removed ones.",
        discussion: "An invalid manifest changes nothing; every problem is listed (exit 2). Same as SIGHUP to the supervisor.")

    @OptionGroup var homeOptions: HomeOptions

    func run() async throws {
        let client = try await SupervisorClient.connect(home: homeOptions.resolved)
        do {
            let response = try await client.rpc.call(
                SupervisorService.reload, ControlService.ReloadRequest(), timeout: .seconds(900))
            await client.close()
            if response.restarted.isEmpty && response.started.isEmpty && response.stopped.isEmpty {
                print("No manifest changed.")
            }
            if !response.restarted.isEmpty { print("Restarted: \(response.restarted.joined(separator: ", "))") }
            if !response.started.isEmpty { print("Started: \(response.started.joined(separator: ", "))") }
            if !response.stopped.isEmpty { print("Stopped: \(response.stopped.joined(separator: ", "))") }
        } catch let error as RPCError where error.code == .invalidArgument {
            throw CLIError(error.message, exitCode: 2)
        } catch {
            throw explain(error)
        }
    }
}
