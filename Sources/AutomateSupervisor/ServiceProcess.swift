import Foundation

/// A service's main process, with its stdout and stderr captured line by line into the service's log.
struct ServiceProcess: Sendable {
    /// The process (its pid is its process group).
    let child: ChildProcess
    /// Complete once the output pipes are closed by every writer and their last line is logged.
    private let output: [EventLoopFutureBox]

    /// Starts the manifest's command in a new process group, as the service's user, in its working
    /// folder, with its environment and `extraEnvironment`.
    static func spawn(_ context: ServiceContext, extraEnvironment: [String: String] = [:]) async throws -> ServiceProcess {
        let manifest = context.manifest
        let log = context.log
        var writeEnds: [Int32] = []
        // The child has its own copies: ours close whatever happens, so the capture ends with the child.
        defer { for fd in writeEnds { close(fd) } }
        var output: [EventLoopFutureBox] = []
        for source in ["stdout", "stderr"] {
            let (readEnd, writeEnd) = try OutputCapture.makePipe()
            writeEnds.append(writeEnd)
            do {
                output.append(EventLoopFutureBox(try await OutputCapture.capture(readEnd: readEnd) { log.append($0, source: source) }))
            } catch {
                close(readEnd)
                throw error
            }
        }
        var options = ChildProcess.Options(
            executable: manifest.command[0], arguments: Array(manifest.command.dropFirst()),
            environment: context.environment.merging(extraEnvironment) { $1 })
        options.standardOutput = writeEnds[0]
        options.standardError = writeEnds[1]
        options.user = context.user
        options.workingDirectory = manifest.workingDirectory ?? context.dataDirectory
        let child = try ChildProcess.spawn(options)
        return ServiceProcess(child: child, output: output)
    }

    /// Waits until the process has exited, kills whatever it left in its process group, and lets its
    /// output drain (one second at most per pipe). Returns how it ended.
    func waitUntilGone() async -> ExitStatus {
        let status = await child.waitForExit()
        child.signalGroup(SIGKILL)
        for pipe in output { _ = await pipe.completes(within: .seconds(1)) }
        child.forget()
        return status
    }
}
