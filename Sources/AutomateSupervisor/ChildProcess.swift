import CAutomateShims
import Foundation

/// A child process started by the supervisor: in its own process group, with a death signal tied to
/// the supervisor's life, optionally as another user.
public struct ChildProcess: Sendable {
    /// What to start and how.
    public struct Options: Sendable {
        /// Program: an absolute path, or a name looked up in the `PATH` of ``environment``.
        public var executable: String
        /// Arguments after argv[0].
        public var arguments: [String]
        /// The complete environment of the child.
        public var environment: [String: String]
        /// Working directory (nil: the supervisor's).
        public var workingDirectory: String?
        /// Descriptors to become the child's stdin, stdout and stderr (nil: /dev/null).
        public var standardInput: Int32?
        public var standardOutput: Int32?
        public var standardError: Int32?
        /// A descriptor the child gets as fd 3 (a readiness pipe), nil for none.
        public var extraDescriptor: Int32?
        /// Run as this user (nil: the caller's).
        public var user: ServiceUser?
        /// Signal the child gets if the supervisor dies (0: none).
        public var deathSignal: Int32 = SIGKILL
        /// Start a new session instead of only a new process group (for daemons that must outlive a
        /// terminal, such as the supervisor launched by `automate start`).
        public var newSession = false
        /// The child's umask (nil: inherited).
        public var umask: mode_t? = nil

        public init(executable: String, arguments: [String] = [], environment: [String: String]) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
        }
    }

    /// Why a process could not be started.
    public struct SpawnError: Error, CustomStringConvertible {
        /// The program that was to run.
        public let executable: String
        /// The step that failed (`execve`, `setuid`, `chdir`, ...).
        public let step: String
        /// errno of that step.
        public let errno: Int32

        public var description: String {
            let reason = String(cString: strerror(errno))
            switch step {
            case "lookup":
                return "cannot start \(executable): not found in PATH; install it or give an absolute path"
            case "execve" where errno == ENOENT:
                return "cannot start \(executable): no such file"
            case "execve" where errno == EACCES:
                return "cannot start \(executable): permission denied (is it executable, and readable by the service's user?)"
            default:
                return "cannot start \(executable): \(step) failed: \(reason)"
            }
        }
    }

    /// The child's process id, which is also its process group id.
    public let pid: pid_t

    /// Starts a process and registers it with ``ProcessReaper/shared``.
    public static func spawn(_ options: Options) throws(SpawnError) -> ChildProcess {
        let path = try resolve(options.executable, path: options.environment["PATH"])
        var argv = [path.split(separator: "/").last.map(String.init) ?? path]
        if !options.executable.hasPrefix("/") { argv[0] = options.executable }
        argv += options.arguments
        let envp = options.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }

        let pid = try ProcessReaper.shared.registering { () throws(SpawnError) -> pid_t in
            let result: Result<pid_t, SpawnError> = withCStrings(argv) { cArgv in
                withCStrings(envp) { cEnvp in
                    var groups = options.user?.groups ?? []
                    return groups.withUnsafeMutableBufferPointer { groupBuffer in
                        path.withCString { cPath in
                            withOptionalCString(options.workingDirectory) { cCwd in
                                var o = automate_spawn_options()
                                o.path = cPath
                                o.argv = cArgv
                                o.envp = cEnvp
                                o.working_directory = cCwd
                                o.stdin_fd = options.standardInput ?? -1
                                o.stdout_fd = options.standardOutput ?? -1
                                o.stderr_fd = options.standardError ?? -1
                                o.extra_fd = options.extraDescriptor ?? -1
                                if let user = options.user, user.uid != geteuid() || geteuid() == 0 {
                                    o.uid = Int64(user.uid)
                                    o.gid = Int64(user.gid)
                                    o.groups = UnsafePointer(groupBuffer.baseAddress)
                                    o.group_count = geteuid() == 0 ? Int32(groupBuffer.count) : -1
                                } else {
                                    o.uid = -1
                                    o.gid = -1
                                    o.group_count = -1
                                }
                                o.process_group_mode = options.newSession ? 2 : 1
                                o.death_signal = options.deathSignal
                                o.umask_value = options.umask.map { Int32($0) } ?? -1
                                var pid: pid_t = -1
                                var err: Int32 = 0
                                var step: UnsafePointer<CChar>? = nil
                                if automate_spawn(&o, &pid, &err, &step) != 0 {
                                    return .failure(SpawnError(
                                        executable: options.executable,
                                        step: step.map { String(cString: $0) } ?? "spawn",
                                        errno: err))
                                }
                                return .success(pid)
                            }
                        }
                    }
                }
            }
            return try result.get()
        }
        automate_group_guard_add(pid)
        return ChildProcess(pid: pid)
    }

    /// Sends a signal to the child's whole process group. Returns false if the group is gone.
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        kill(-pid, signal) == 0
    }

    /// Waits for the child to exit.
    public func waitForExit() async -> ExitStatus {
        // nil only for a child reaped and forgotten long ago: it is gone either way.
        await ProcessReaper.shared.waitForExit(pid: pid, timeout: nil) ?? .signaled(SIGKILL)
    }

    /// Waits at most `timeout` for the child to exit; nil if it is still running.
    public func waitForExit(timeout: Duration) async -> ExitStatus? {
        await ProcessReaper.shared.waitForExit(pid: pid, timeout: timeout)
    }

    /// Drops the reaper's record of this child's exit (call once nothing will wait for it again).
    public func forget() {
        automate_group_guard_remove(pid)
        ProcessReaper.shared.forget(pid: pid)
    }

    /// Finds `name` in `path` (colon-separated) unless it already contains a slash.
    static func resolve(_ name: String, path: String?) throws(SpawnError) -> String {
        if name.contains("/") { return name }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw SpawnError(executable: name, step: "lookup", errno: ENOENT)
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { buffer in body(buffer.baseAddress!) }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    let copy = strdup(string)
    defer { free(copy) }
    return body(copy)
}
