import CAutomateShims
import Foundation
import Synchronization

/// Reaps every child of this process on one dedicated thread (`waitpid(-1)`), so that the supervisor,
/// as a child subreaper, also collects the orphans its services leave behind.
///
/// Processes started through ``ChildProcess/spawn(_:)`` are registered before the reaper can record
/// their exit; their status is kept until ``forget(pid:)``, so any number of waiters, early or late,
/// get it.
///
/// - Important: in a process that uses the reaper, nothing else may wait for children (Foundation's
///   `Process` included): the reaper would collect them first.
public final class ProcessReaper: Sendable {
    /// The one reaper of this process.
    public static let shared = ProcessReaper()

    private struct State {
        var known: Set<pid_t> = []
        var exited: [pid_t: ExitStatus] = [:]
        /// Exits already handled, kept a while for late waiters (newest last).
        var forgotten: [(pid: pid_t, status: ExitStatus)] = []
        var waiters: [pid_t: [UInt64: CheckedContinuation<ExitStatus?, Never>]] = [:]
        var nextToken: UInt64 = 0
        var started = false
        var orphansReaped = 0
    }

    private let state = Mutex(State())
    /// Signalled whenever a child is spawned, so the thread can wait again after ECHILD.
    private let childrenAppeared = DispatchSemaphore(value: 0)

    private init() {}

    /// Number of processes reaped that this process did not spawn (re-parented orphans).
    public var orphansReaped: Int { state.withLock { $0.orphansReaped } }

    /// Runs `spawn` with the registry locked and registers the pid it returns, so the exit cannot be
    /// recorded before the pid is known. `spawn` must be quick (a fork and exec).
    func registering<E: Error>(_ spawn: () throws(E) -> pid_t) throws(E) -> pid_t {
        let startThread: Bool = state.withLock { s in
            defer { s.started = true }
            return !s.started
        }
        if startThread { startReaperThread() }
        let result: Result<pid_t, E> = state.withLock { s in
            do throws(E) {
                let pid = try spawn()
                s.known.insert(pid)
                // The kernel hands out pids again once they wrap (32768 by default): an exit recorded for
                // an earlier child of this number that was never forgotten is not this child's, and a
                // waiter must not get it (it would see a process still running as long gone).
                s.exited.removeValue(forKey: pid)
                s.forgotten.removeAll { $0.pid == pid }
                return .success(pid)
            } catch {
                return .failure(error)
            }
        }
        childrenAppeared.signal()
        return try result.get()
    }

    /// Waits until the process exits (or `timeout` passes: nil) and returns how it ended.
    public func waitForExit(pid: pid_t, timeout: Duration?) async -> ExitStatus? {
        let token: UInt64 = state.withLock { s in
            s.nextToken += 1
            return s.nextToken
        }
        let timer: Task<Void, Never>? = timeout.map { timeout in
            Task { [self] in
                try? await Task.sleep(for: timeout)
                self.resume(pid: pid, token: token, with: nil)
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<ExitStatus?, Never>) in
            let ready: ExitStatus?? = state.withLock { s in
                if let status = s.exited[pid] { return .some(status) }
                if !s.known.contains(pid) {
                    return .some(s.forgotten.last(where: { $0.pid == pid })?.status)
                }
                s.waiters[pid, default: [:]][token] = continuation
                return .none
            }
            if case .some(let status) = ready { continuation.resume(returning: status) }
        }
    }

    /// Forgets a child whose exit was handled.
    public func forget(pid: pid_t) {
        state.withLock { s in
            if let status = s.exited.removeValue(forKey: pid) {
                s.known.remove(pid)
                s.forgotten.append((pid, status))
                if s.forgotten.count > 1024 { s.forgotten.removeFirst(s.forgotten.count - 1024) }
            }
        }
    }

    private func resume(pid: pid_t, token: UInt64, with status: ExitStatus?) {
        let continuation = state.withLock { s in s.waiters[pid]?.removeValue(forKey: token) }
        continuation?.resume(returning: status)
    }

    private func startReaperThread() {
        let thread = Thread { [self] in self.reapForever() }
        thread.name = "automate-reaper"
        thread.start()
    }

    private func reapForever() {
        while true {
            var raw: Int32 = 0
            let pid = automate_wait_any(&raw)
            if pid < 0 {
                // ECHILD: no children now. Sleep until one is spawned.
                childrenAppeared.wait()
                continue
            }
            var code: Int32 = 0
            let kind = automate_decode_wait_status(raw, &code)
            let status: ExitStatus = kind == 2 ? .signaled(code) : .exited(code)
            let toResume: [CheckedContinuation<ExitStatus?, Never>] = state.withLock { s in
                guard s.known.contains(pid) else {
                    s.orphansReaped += 1
                    return []
                }
                s.exited[pid] = status
                return Array((s.waiters.removeValue(forKey: pid) ?? [:]).values)
            }
            for continuation in toResume { continuation.resume(returning: status) }
        }
    }
}
