import ArgumentParser
import AutomateManifest
import AutomateSupervisor
import Foundation

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "The backup gateway's endpoint and key pair.",
        subcommands: [Credentials.self, Rotate.self])

    struct Credentials: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the gateway's endpoint, bucket and key pair as `export` lines.",
            discussion: """
                For browsing backups with any S3 client: eval "$(automate gateway credentials)"; \
                aws s3 ls s3://backups/ --endpoint-url "$AWS_ENDPOINT_URL". Only the owner of the home \
                (or root) may read them.
                """)

        @OptionGroup var homeOptions: HomeOptions

        func run() async throws {
            let home = homeOptions.resolved
            var info = stat()
            guard stat(home.path, &info) == 0 else { throw CLIError("no stack home at \(home.path): run `automate start` first") }
            guard geteuid() == 0 || geteuid() == info.st_uid else {
                throw CLIError("only the owner of \(home.path) (or root) may read the gateway's key pair", exitCode: 4)
            }
            let location = try StackLocation.discover()
            let manifests = try location.manifests(home: home)
            let store = GatewaySecrets(home: home, owner: nil)
            guard let credentials = try store.load() else {
                throw CLIError("the gateway has no key pair yet (\(store.path)): run `automate start` first")
            }
            guard let access = GatewayAccess.from(manifests: manifests, secrets: store, credentials: credentials) else {
                throw CLIError("this stack has no backup gateway (no manifest of kind \"gateway\")")
            }
            print("export AWS_ACCESS_KEY_ID=\(credentials.accessKeyID)")
            print("export AWS_SECRET_ACCESS_KEY=\(credentials.secretAccessKey)")
            print("export AWS_DEFAULT_REGION=\(access.region)")
            print("export AWS_ENDPOINT_URL=\(access.endpoint)")
            print("export AUTOMATE_GATEWAY_BUCKET=\(access.bucket)")
            print("# aws s3 ls s3://\(access.bucket)/ --endpoint-url \(access.endpoint)")
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-credentials",
            abstract: "Make a new gateway key pair and restart the gateway and the services that use it.")

        @OptionGroup var homeOptions: HomeOptions

        func run() async throws {
            let client = try await SupervisorClient.connect(home: homeOptions.resolved)
            do {
                let response = try await client.rpc.call(
                    SupervisorService.rotateGatewayCredentials, ControlService.RotateRequest(), timeout: .seconds(600))
                await client.close()
                print("New access key id \(response.accessKeyID); restarted \(response.restarted.joined(separator: ", ")).")
            } catch {
                throw explain(error)
            }
        }
    }
}
