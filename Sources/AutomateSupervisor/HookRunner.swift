import Foundation

/// Runs a service's lifecycle hooks (`hooks/<service>/<hook>`): with a timeout, as the service's user,
/// in their own process group with stdin from /dev/null, the service's environment and config, and
/// their output in the service's log under `hook:<name>`.
public struct HookRunner: Sendable {
    /// How a hook run ended.
    public struct Result: Sendable {
        /// The exit status (nil when it timed out and had to be killed).
        public let status: ExitStatus?
        /// True when it ran past its timeout and was killed.
        public let timedOut: Bool
        /// The last line it printed (for health messages).
        public let lastLine: String
        /// How long it ran.
        public let duration: Duration

        /// Its exit code, nil when killed or timed out.
        public var exitCode: Int32? {
            if case .exited(let code)? = status { return code }
            return nil
        }
    }

    /// Folder holding one folder of hooks per service.
    public let hooksDirectory: String
    /// The service whose hooks these are.
    public let service: String

    public init(hooksDirectory: String, service: String) {
        self.hooksDirectory = hooksDirectory
        self.service = service
    }

    /// The hook's path if the service has it.
    public func path(of hook: String) -> String? {
        let path = "\(hooksDirectory)/\(service)/\(hook)"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// Runs `hook`; kills its whole process group if it outlives `timeout` or the calling task is cancelled.
    public func run(
        _ hook: String, timeout: Duration, environment: [String: String], user: ServiceUser?,
        workingDirectory: String?, log: any LineSink
    ) async throws -> Result {
        guard let path = path(of: hook) else {
            throw HookError(service: service, hook: hook, reason: "no such hook in \(hooksDirectory)/\(service)")
        }
        guard access(path, X_OK) == 0 else {
            throw HookError(service: service, hook: hook, reason: "\(path) is not executable (chmod +x it)")
        }
        let source = "hook:\(hook)"
        let (readEnd, writeEnd) = try OutputCapture.makePipe()
        let lastLine = LastLine()
        let captured: EventLoopFutureBox
        do {
            captured = EventLoopFutureBox(try await OutputCapture.capture(readEnd: readEnd) { line in
                log.append(line, source: source)
                lastLine.set(line)
            })
        } catch {
            close(readEnd)
            close(writeEnd)
            throw error
        }
        var options = ChildProcess.Options(executable: path, environment: environment.merging(["AUTOMATE_HOOK": hook]) { $1 })
        options.standardOutput = writeEnd
        options.standardError = writeEnd
        options.user = user
        options.workingDirectory = workingDirectory
        let started = ContinuousClock.now
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(options)
        } catch {
            close(writeEnd)
            throw HookError(service: service, hook: hook, reason: "\(error)")
        }
        close(writeEnd)
        defer { child.forget() }
        // Cancelling the calling task (a stop during the init hook) kills the hook's whole group.
        var status = await withTaskCancellationHandler {
            await child.waitForExit(timeout: timeout)
        } onCancel: {
            child.signalGroup(SIGKILL)
        }
        let timedOut = status == nil
        if timedOut {
            log.append("timed out after \(timeout); killing its process group", source: source, priority: .error)
            child.signalGroup(SIGKILL)
            _ = await child.waitForExit()
            status = nil
        }
        // Descendants left behind still hold the pipe (and so keep their group alive, which makes
        // signalling the group safe): give them a moment, then kill them.
        if await !captured.completes(within: .seconds(1)) {
            log.append("left processes behind; killing its process group", source: source)
            child.signalGroup(SIGKILL)
            try? await captured.future.get()
        }
        return Result(status: status, timedOut: timedOut, lastLine: lastLine.get(), duration: ContinuousClock.now - started)
    }
}

/// A hook that could not be run at all.
public struct HookError: Error, CustomStringConvertible {
    public let service: String
    public let hook: String
    public let reason: String
    public var description: String { "\(service): hook \(hook): \(reason)" }
}

import NIOCore
import Synchronization

struct EventLoopFutureBox: Sendable {
    let future: EventLoopFuture<Void>
    init(_ future: EventLoopFuture<Void>) { self.future = future }

    /// True if the future completes within `timeout`.
    func completes(within timeout: Duration) async -> Bool {
        let loop = future.eventLoop
        let promise = loop.makePromise(of: Bool.self)
        let done = Mutex(false)
        let finish: @Sendable (Bool) -> Void = { value in
            if done.withLock({ d in defer { d = true }; return !d }) { promise.succeed(value) }
        }
        let timer = loop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) { finish(false) }
        future.whenComplete { _ in
            timer.cancel()
            finish(true)
        }
        return (try? await promise.futureResult.get()) ?? false
    }
}

final class LastLine: Sendable {
    private let value = Mutex("")
    func set(_ line: String) {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if !trimmed.isEmpty { value.withLock { $0 = trimmed } }
    }
    func get() -> String { value.withLock { $0 } }
}
