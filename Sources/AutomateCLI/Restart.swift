import ArgumentParser
import AutomateSupervisor
import Foundation

struct Restart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop one service and start it again (also brings a failed service back).")

    @OptionGroup var homeOptions: HomeOptions

    @Argument(help: "The service to restart.")
    var service: String

    func run() async throws {
        let client = try await SupervisorClient.connect(home: homeOptions.resolved)
        do {
            let status = try await client.restart(service)
            print("\(status.name): \(status.state) \(status.message)")
        } catch {
            throw explain(error)
        }
        await client.close()
    }
}
