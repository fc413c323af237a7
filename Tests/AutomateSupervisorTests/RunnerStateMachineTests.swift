import AutomateManifest
import AutomateSupervisor
import Foundation
import Testing

/// The runner's state machine on its own: every transition, with no process and no real time.
@Suite("Runner state machine")
struct RunnerStateMachineTests {
    /// A machine with a clock the test moves (a class, so that `#expect` can call `send`).
    final class Driver {
        var machine: RunnerStateMachine
        var now = ContinuousClock.now
        let date = Date(timeIntervalSince1970: 1_700_000_000)

        init(_ configuration: RunnerStateMachine.Configuration) {
            machine = RunnerStateMachine(configuration: configuration)
        }

        var state: RunnerState { machine.state }
        var attempt: UInt64 { machine.attempt }

        @discardableResult
        func send(_ event: RunnerEvent, after delay: Duration = .zero) -> [RunnerAction] {
            now += delay
            return machine.handle(event, at: now, date: date)
        }

        /// start → init hook → spawn as `pid`; returns the spawn's actions.
        @discardableResult
        func spawn(pid: pid_t = 100) -> [RunnerAction] {
            send(.start)
            send(.initFinished(attempt: attempt, error: nil))
            return send(.spawnFinished(attempt: attempt, .spawned(pid)))
        }

        /// start → ... → running as `pid`.
        func run(pid: pid_t = 100) {
            spawn(pid: pid)
            send(.healthChecked(pid: pid, result: .ok, detail: "fine"), after: .milliseconds(20))
        }
    }

    static let sigterm = Int32(15)
    static let sigkill = Int32(9)

    static func configuration(
        dependsOn: [String] = [], policy: RestartPolicy = .onFailure, watchdog: Duration? = nil, crashLoopLimit: Int = 3
    ) -> RunnerStateMachine.Configuration {
        RunnerStateMachine.Configuration(
            name: "svc", commandLine: "/bin/svc --serve", dependsOn: dependsOn,
            health: HealthCheckSpec(interval: .seconds(1), grace: .seconds(5), watchdog: watchdog),
            // base == max: every delay is exactly 100 ms.
            restart: RestartSpec(
                policy: policy, backoffBase: .milliseconds(100), backoffMax: .milliseconds(100),
                crashLoopLimit: crashLoopLimit, crashLoopWindow: .seconds(60), resetAfter: .seconds(60)),
            stop: StopSpec(signalName: "SIGTERM", timeout: .seconds(2))!)
    }

    /// The broadcasts among `actions`: (kind, message, reported state).
    static func broadcasts(_ actions: [RunnerAction]) -> [(kind: RunnerEventKind, message: String, state: ServiceState)] {
        actions.compactMap {
            if case .emit(let kind, let message, let snapshot) = $0 { return (kind, message, snapshot.state) }
            return nil
        }
    }

    static func has(_ actions: [RunnerAction], _ predicate: (RunnerAction) -> Bool) -> Bool {
        actions.contains(where: predicate)
    }

    static func isSpawn(_ action: RunnerAction) -> Bool {
        if case .spawn = action { return true }
        return false
    }

    static func isHealthCheck(_ action: RunnerAction) -> Bool {
        if case .checkHealth = action { return true }
        return false
    }

    // MARK: starting

    @Test("start without dependencies: init hook, spawn, starting with fast checks, grace timer")
    func startSequence() {
        let d = Driver(Self.configuration())
        let started = d.send(.start)
        #expect(d.state == .initializing(stop: nil))
        #expect(started.contains(.runInitHook(attempt: 1)))
        #expect(Self.broadcasts(started).map(\.message) == ["svc starting: starting"])

        #expect(d.send(.initFinished(attempt: 1, error: nil)) == [.spawn(attempt: 1)])
        #expect(d.state == .spawning(stop: nil))

        let spawned = d.send(.spawnFinished(attempt: 1, .spawned(100)), after: .milliseconds(5))
        guard case .starting(let process) = d.state else {
            Issue.record("expected starting, got \(d.state)")
            return
        }
        #expect(process.pid == 100)
        #expect(process.startedInstant == d.now)
        #expect(spawned.contains(.log("started /bin/svc --serve as pid 100", isError: false)))
        #expect(spawned.contains(.checkHealth(pid: 100, after: .milliseconds(20))))
        #expect(spawned.contains(.startTimer(.grace, attempt: 1, at: d.now + .seconds(5))))
        #expect(!Self.has(spawned) { if case .startTimer(.watchdog, _, _) = $0 { true } else { false } })
        let broadcast = Self.broadcasts(spawned)
        #expect(broadcast.map(\.message) == ["svc starting: started as pid 100"])
        #expect(d.machine.snapshot.pid == 100)
        #expect(d.machine.snapshot.startedAt == d.date)

        // A start while it is meant to run changes nothing.
        #expect(d.send(.start).isEmpty)
        #expect(d.state == .starting(process))
    }

    @Test("dependencies: wait, then start; a failed or late dependency fails it; a cancelled wait waits for the stop")
    func dependencies() {
        let d = Driver(Self.configuration(dependsOn: ["base", "db"]))
        let waiting = d.send(.start)
        #expect(d.state == .waiting)
        #expect(waiting.contains(.awaitDependencies(attempt: 1)))
        #expect(Self.broadcasts(waiting).map(\.message) == ["svc waiting: waiting for base, db"])
        #expect(d.send(.dependenciesResolved(.cancelled, attempt: 1)).isEmpty)
        #expect(d.state == .waiting)
        #expect(d.send(.dependenciesResolved(.ready, attempt: 1)).contains(.runInitHook(attempt: 1)))
        #expect(d.state == .initializing(stop: nil))

        let failing = Driver(Self.configuration(dependsOn: ["base"]))
        failing.send(.start)
        let failed = failing.send(.dependenciesResolved(.failed("base"), attempt: 1))
        #expect(failing.state == .failed(reason: "dependency base failed"))
        #expect(failed.contains(.closeNotifySocket))
        #expect(!Self.has(failed) { if case .runPostStopHook = $0 { true } else { false } })

        let late = Driver(Self.configuration(dependsOn: ["base", "db"]))
        late.send(.start)
        late.send(.dependenciesResolved(.timedOut(["db"]), attempt: 1))
        #expect(late.state == .failed(reason: "dependencies not healthy in time: db"))
        #expect(late.machine.snapshot.state == .failed)
    }

    // MARK: health

    @Test("health: fast checks while starting, healthy → running, critical → unhealthy, back to running")
    func health() {
        let d = Driver(Self.configuration())
        d.spawn()
        let first = d.send(.healthChecked(pid: 100, result: .critical, detail: "not yet"), after: .milliseconds(20))
        #expect(first.contains(.checkHealth(pid: 100, after: .milliseconds(40))))
        #expect(Self.broadcasts(first).map(\.message) == ["svc health critical: not yet"])
        #expect(d.state.serviceState == .starting)
        // Same health again: no broadcast, the delay keeps doubling up to the interval.
        let second = d.send(.healthChecked(pid: 100, result: .critical, detail: "not yet"), after: .milliseconds(40))
        #expect(Self.broadcasts(second).isEmpty)
        #expect(second.contains(.checkHealth(pid: 100, after: .milliseconds(80))))
        var delay = Duration.milliseconds(80)
        for _ in 0..<6 {
            let actions = d.send(.healthChecked(pid: 100, result: .critical, detail: "not yet"), after: delay)
            delay = min(delay * 2, .seconds(1))
            #expect(actions.contains(.checkHealth(pid: 100, after: delay)))
        }

        let healthy = d.send(.healthChecked(pid: 100, result: .warning, detail: "disk 80%"), after: .seconds(1))
        #expect(d.state.serviceState == .running)
        #expect(Self.broadcasts(healthy).map(\.message) == ["svc running: healthy"])
        #expect(healthy.contains(.checkHealth(pid: 100, after: .seconds(1))))
        #expect(d.machine.snapshot.health == .warning)
        #expect(d.machine.snapshot.healthMessage == "disk 80%")

        let ok = d.send(.healthChecked(pid: 100, result: .ok, detail: "fine"), after: .seconds(1))
        #expect(Self.broadcasts(ok).map(\.kind) == [.health])
        #expect(d.state.serviceState == .running)

        let critical = d.send(.healthChecked(pid: 100, result: .critical, detail: "down"), after: .seconds(1))
        #expect(Self.broadcasts(critical).map(\.message) == ["svc unhealthy: health critical: down"])
        #expect(d.state.serviceState == .unhealthy)
        let unknown = d.send(.healthChecked(pid: 100, result: .unknown, detail: "timeout"), after: .seconds(1))
        #expect(Self.broadcasts(unknown).map(\.kind) == [.health])
        #expect(d.state.serviceState == .unhealthy)
        d.send(.healthChecked(pid: 100, result: .ok, detail: "fine"), after: .seconds(1))
        #expect(d.state.serviceState == .running)

        // A check of another process is ignored; so is the grace timer once it is healthy.
        #expect(d.send(.healthChecked(pid: 99, result: .critical, detail: "stale")).isEmpty)
        #expect(d.send(.timerFired(.grace, attempt: 1), after: .seconds(5)).isEmpty)
        #expect(d.state.serviceState == .running)
    }

    @Test("grace expiry: killed with the stop signal, restarted even after a clean exit under on-failure")
    func graceExpiry() {
        let d = Driver(Self.configuration(policy: .onFailure))
        d.spawn()
        d.send(.healthChecked(pid: 100, result: .critical, detail: "no"), after: .milliseconds(20))
        let expired = d.send(.timerFired(.grace, attempt: 1), after: .seconds(5))
        let reason = "not healthy within its start-up grace of 5.0 seconds"
        guard case .stopping(let process, .killed(reason), let since) = d.state else {
            Issue.record("expected stopping for the grace, got \(d.state)")
            return
        }
        #expect(process.pid == 100 && since == d.now)
        #expect(expired.first == .log(reason, isError: false))
        #expect(expired.contains(.cancelTimers))
        #expect(expired.contains(.signalGroup(pid: 100, signal: Self.sigterm)))
        #expect(expired.contains(.startTimer(.kill, attempt: 1, at: d.now + .seconds(2))))
        #expect(d.machine.snapshot.state == .stopping)
        // Checks of the dying process change nothing.
        #expect(d.send(.healthChecked(pid: 100, result: .ok, detail: "late")).isEmpty)

        let exited = d.send(.processExited(pid: 100, status: .exited(0)), after: .milliseconds(10))
        #expect(Self.broadcasts(exited).map(\.message) == ["svc \(reason); exited with code 0"])
        #expect(Self.broadcasts(exited).map(\.kind) == [.exit])
        #expect(exited.contains(.runPostStopHook(attempt: 1)))
        #expect(d.machine.snapshot.state == .backoff)
        #expect(d.machine.snapshot.pid == 0)
        let decided = d.send(.postStopFinished(attempt: 1))
        #expect(d.state == .backoff(until: d.now + .milliseconds(100)))
        #expect(decided.contains(.startTimer(.backoff, attempt: 1, at: d.now + .milliseconds(100))))
        #expect(d.machine.restarts == 1)
        #expect(d.machine.message == "restarting in 0.10s after: \(reason); exited with code 0")
    }

    @Test("watchdog: killed without a ping within the grace, or when the pings stop")
    func watchdog() {
        let silent = Driver(Self.configuration(watchdog: .seconds(1)))
        let spawned = silent.spawn()
        let start = silent.now
        #expect(spawned.contains(.startTimer(.watchdog, attempt: 1, at: start + .seconds(5))))
        silent.send(.healthChecked(pid: 100, result: .ok, detail: "fine"), after: .milliseconds(20))
        let killed = silent.send(.timerFired(.watchdog, attempt: 1), after: .seconds(5) - .milliseconds(20))
        #expect(killed.contains(.signalGroup(pid: 100, signal: Self.sigterm)))
        #expect(killed.first == .log("watchdog: no WATCHDOG=1 within its start-up grace", isError: false))

        let pinging = Driver(Self.configuration(watchdog: .seconds(1)))
        pinging.spawn()
        let spawnedAt = pinging.now
        pinging.send(.healthChecked(pid: 100, result: .ok, detail: "fine"), after: .milliseconds(20))
        pinging.send(.watchdogPinged, after: .milliseconds(4480))
        // Due at 5 s; the last ping was at 4.5 s: check again at 5.5 s.
        let early = pinging.send(.timerFired(.watchdog, attempt: 1), after: .milliseconds(500))
        #expect(early == [.startTimer(.watchdog, attempt: 1, at: spawnedAt + .milliseconds(5500))])
        pinging.send(.watchdogPinged, after: .milliseconds(400))
        let stillFine = pinging.send(.timerFired(.watchdog, attempt: 1), after: .milliseconds(100))
        #expect(stillFine == [.startTimer(.watchdog, attempt: 1, at: spawnedAt + .milliseconds(6400))])
        let late = pinging.send(.timerFired(.watchdog, attempt: 1), after: .milliseconds(900))
        #expect(late.first == .log("watchdog: no WATCHDOG=1 for 1.0 seconds", isError: false))
        guard case .stopping(_, .killed, _) = pinging.state else {
            Issue.record("expected stopping for the watchdog, got \(pinging.state)")
            return
        }
    }

    // MARK: stopping

    @Test("stop of a running process: stop signal, SIGKILL at the timeout, post-stop hook, stopped")
    func stopRunning() {
        let d = Driver(Self.configuration())
        d.run()
        let stopping = d.send(.stop)
        #expect(Self.broadcasts(stopping).map(\.message) == ["svc stopping: stopping (SIGTERM)"])
        #expect(stopping.contains(.log("sending SIGTERM to process group 100 (stop requested)", isError: false)))
        #expect(stopping.contains(.signalGroup(pid: 100, signal: Self.sigterm)))
        #expect(stopping.contains(.startTimer(.kill, attempt: 1, at: d.now + .seconds(2))))
        #expect(d.machine.snapshot.health == .none)
        // A second stop sends nothing more.
        #expect(d.send(.stop).isEmpty)

        let kill = d.send(.timerFired(.kill, attempt: 1), after: .seconds(2))
        #expect(kill == [
            .log("still running after 2.0 seconds: SIGKILL", isError: false), .signalGroup(pid: 100, signal: Self.sigkill),
        ])
        let exited = d.send(.processExited(pid: 100, status: .signaled(Self.sigkill)))
        #expect(Self.broadcasts(exited).map(\.message) == ["svc killed by SIGKILL"])
        #expect(d.machine.snapshot.state == .stopping)
        #expect(d.machine.snapshot.lastExit == .signaled(Self.sigkill))
        let done = d.send(.postStopFinished(attempt: 1))
        #expect(d.state == .stopped)
        #expect(done.contains(.stopCompleted))
        #expect(Self.broadcasts(done).map(\.message) == ["svc stopped: stopped"])
        // Timers of the finished attempt are ignored.
        #expect(d.send(.timerFired(.kill, attempt: 1)).isEmpty)
        #expect(d.send(.timerFired(.grace, attempt: 1)).isEmpty)
    }

    @Test("stop while the process is being spawned: the new group is signalled the moment the spawn returns")
    func stopDuringSpawn() {
        let d = Driver(Self.configuration())
        d.send(.start)
        d.send(.initFinished(attempt: 1, error: nil))
        let pending = d.send(.stop)
        #expect(d.state == .spawning(stop: .stayDown))
        #expect(Self.broadcasts(pending).map(\.message) == ["svc stopping: stopping (SIGTERM)"])
        #expect(!pending.contains(.stopCompleted))

        let spawned = d.send(.spawnFinished(attempt: 1, .spawned(200)))
        #expect(spawned.contains(.signalGroup(pid: 200, signal: Self.sigterm)))
        #expect(spawned.contains(.startTimer(.kill, attempt: 1, at: d.now + .seconds(2))))
        #expect(!spawned.contains(where: Self.isHealthCheck))
        #expect(!Self.has(spawned) { if case .startTimer(.grace, _, _) = $0 { true } else { false } })
        guard case .stopping(let process, .requested(.stayDown), _) = d.state else {
            Issue.record("expected stopping, got \(d.state)")
            return
        }
        #expect(process.pid == 200)
        d.send(.processExited(pid: 200, status: .signaled(Self.sigterm)))
        #expect(d.send(.postStopFinished(attempt: 1)).contains(.stopCompleted))
        #expect(d.state == .stopped)

        // The spawn failing instead also ends the stop.
        let failing = Driver(Self.configuration())
        failing.send(.start)
        failing.send(.initFinished(attempt: 1, error: nil))
        failing.send(.stop)
        let failed = failing.send(.spawnFinished(attempt: 1, .failed("cannot start /bin/svc: no such file")))
        #expect(failed.contains(.runPostStopHook(attempt: 1)))
        #expect(failing.send(.postStopFinished(attempt: 1)).contains(.stopCompleted))
        #expect(failing.state == .stopped)
    }

    @Test("stop while the init hook runs: the hook is killed, nothing is spawned")
    func stopDuringInit() {
        let d = Driver(Self.configuration())
        d.send(.start)
        let stopping = d.send(.stop)
        #expect(stopping.contains(.killInitHook))
        #expect(d.state == .initializing(stop: .stayDown))
        #expect(d.machine.snapshot.state == .stopping)
        let ended = d.send(.initFinished(attempt: 1, error: "init hook killed by SIGKILL"))
        #expect(!ended.contains(where: Self.isSpawn))
        #expect(ended.contains(.runPostStopHook(attempt: 1)))
        let done = d.send(.postStopFinished(attempt: 1))
        #expect(done.contains(.stopCompleted))
        #expect(d.state == .stopped)
    }

    @Test("stop in every other state")
    func stopEverywhere() {
        // At rest: complete at once, nothing changes.
        let stopped = Driver(Self.configuration())
        #expect(stopped.send(.stop) == [.stopCompleted])
        #expect(stopped.state == .stopped)

        let failed = Driver(Self.configuration(dependsOn: ["base"]))
        failed.send(.start)
        failed.send(.dependenciesResolved(.failed("base"), attempt: 1))
        #expect(failed.send(.stop) == [.stopCompleted])
        #expect(failed.state == .failed(reason: "dependency base failed"))

        let exited = Driver(Self.configuration(policy: .never))
        exited.run()
        exited.send(.processExited(pid: 100, status: .exited(0)))
        exited.send(.postStopFinished(attempt: 1))
        #expect(exited.state == .exited(.exited(0)))
        #expect(exited.send(.stop) == [.stopCompleted])

        // Waiting: stopped at once; the wait's late answer is ignored.
        let waiting = Driver(Self.configuration(dependsOn: ["base"]))
        waiting.send(.start)
        let stop = waiting.send(.stop)
        #expect(stop.contains(.stopCompleted))
        #expect(waiting.state == .stopped)
        #expect(waiting.send(.dependenciesResolved(.ready, attempt: 1)).isEmpty)
        #expect(waiting.state == .stopped)

        // Starting (not healthy yet) and unhealthy: signalled like running.
        let starting = Driver(Self.configuration())
        starting.spawn()
        #expect(starting.send(.stop).contains(.signalGroup(pid: 100, signal: Self.sigterm)))
        let unhealthy = Driver(Self.configuration())
        unhealthy.run()
        unhealthy.send(.healthChecked(pid: 100, result: .critical, detail: "down"))
        #expect(unhealthy.machine.snapshot.state == .unhealthy)
        #expect(unhealthy.send(.stop).contains(.signalGroup(pid: 100, signal: Self.sigterm)))

        // Being killed for its grace: a stop makes it end in `stopped`, without a second signal.
        let graceKilled = Driver(Self.configuration())
        graceKilled.spawn()
        graceKilled.send(.timerFired(.grace, attempt: 1), after: .seconds(5))
        #expect(graceKilled.send(.stop).isEmpty)
        graceKilled.send(.processExited(pid: 100, status: .signaled(Self.sigterm)))
        #expect(graceKilled.machine.snapshot.state == .stopping)
        #expect(graceKilled.send(.postStopFinished(attempt: 1)).contains(.stopCompleted))
        #expect(graceKilled.state == .stopped)
        #expect(graceKilled.machine.restarts == 0)

        // Post-stop hook after a crash: the stop wins over the restart.
        let cleaning = Driver(Self.configuration())
        cleaning.run()
        cleaning.send(.processExited(pid: 100, status: .exited(1)))
        #expect(cleaning.machine.snapshot.state == .backoff)
        let stopCleaning = cleaning.send(.stop)
        #expect(Self.broadcasts(stopCleaning).map(\.state) == [.stopping])
        #expect(cleaning.send(.postStopFinished(attempt: 1)).contains(.stopCompleted))
        #expect(cleaning.state == .stopped)

        // Backoff: stopped at once; the restart timer is ignored.
        let backoff = Driver(Self.configuration())
        backoff.run()
        backoff.send(.processExited(pid: 100, status: .exited(1)))
        backoff.send(.postStopFinished(attempt: 1))
        #expect(backoff.machine.snapshot.state == .backoff)
        #expect(backoff.send(.stop).contains(.stopCompleted))
        #expect(backoff.state == .stopped)
        #expect(backoff.send(.timerFired(.backoff, attempt: 1), after: .seconds(1)).isEmpty)
        #expect(backoff.state == .stopped)
    }

    @Test("a start during a stop takes effect once the stop is complete")
    func startDuringStop() throws {
        let d = Driver(Self.configuration())
        d.run()
        d.send(.stop)
        #expect(d.send(.start).isEmpty)
        d.send(.processExited(pid: 100, status: .signaled(Self.sigterm)))
        let done = d.send(.postStopFinished(attempt: 1))
        let completed = try #require(done.firstIndex(of: .stopCompleted))
        let restarted = try #require(done.firstIndex(of: .runInitHook(attempt: 2)))
        #expect(completed < restarted)
        #expect(Self.broadcasts(done).map(\.message) == ["svc stopped: stopped", "svc starting: starting"])
        #expect(d.state == .initializing(stop: nil))

        // A stop after the start wins again.
        let e = Driver(Self.configuration())
        e.send(.start)
        e.send(.stop)
        e.send(.start)
        #expect(e.state == .initializing(stop: .startAgain))
        e.send(.stop)
        #expect(e.state == .initializing(stop: .stayDown))
    }

    // MARK: restart policy

    @Test("crash loop: restarts with the backoff until the limit, then failed; a start tries again")
    func crashLoop() {
        let d = Driver(Self.configuration(policy: .always, crashLoopLimit: 2))
        var pid: pid_t = 100
        d.run(pid: pid)
        for restart in 1...2 {
            d.send(.processExited(pid: pid, status: .exited(3)), after: .milliseconds(50))
            d.send(.postStopFinished(attempt: d.attempt))
            #expect(d.state == .backoff(until: d.now + .milliseconds(100)))
            #expect(d.machine.restarts == UInt32(restart))
            // Too early (a timer never fires early, but a stale one could): wait again.
            #expect(d.send(.timerFired(.backoff, attempt: d.attempt), after: .milliseconds(50))
                == [.startTimer(.backoff, attempt: d.attempt, at: d.now + .milliseconds(50))])
            let again = d.send(.timerFired(.backoff, attempt: d.attempt), after: .milliseconds(50))
            #expect(again.contains(.runInitHook(attempt: UInt64(restart + 1))))
            pid += 1
            d.send(.initFinished(attempt: d.attempt, error: nil))
            d.send(.spawnFinished(attempt: d.attempt, .spawned(pid)))
        }
        d.send(.processExited(pid: pid, status: .exited(3)), after: .milliseconds(50))
        let failed = d.send(.postStopFinished(attempt: d.attempt))
        #expect(d.state == .failed(reason: "crash loop: restarted 2 times within 60.0 seconds; last: exited with code 3"))
        #expect(failed.contains(.closeNotifySocket))
        #expect(d.machine.snapshot.lastExit == .exited(3))
        #expect(d.machine.restarts == 2)

        let retry = d.send(.start)
        #expect(retry.contains(.runInitHook(attempt: 4)))
        d.send(.initFinished(attempt: 4, error: nil))
        d.send(.spawnFinished(attempt: 4, .spawned(200)))
        d.send(.processExited(pid: 200, status: .exited(3)))
        d.send(.postStopFinished(attempt: 4))
        // The history was forgotten by the operator's start; the counter was not.
        #expect(d.machine.snapshot.state == .backoff)
        #expect(d.machine.restarts == 3)
    }

    @Test("restart policies: never, on-failure, always")
    func policies() {
        func end(_ policy: RestartPolicy, _ status: AutomateSupervisor.ExitStatus) -> RunnerState {
            let d = Driver(Self.configuration(policy: policy))
            d.run()
            d.send(.processExited(pid: 100, status: status), after: .seconds(1))
            d.send(.postStopFinished(attempt: 1))
            return d.state
        }
        #expect(end(.never, .exited(0)) == .exited(.exited(0)))
        #expect(end(.never, .exited(1)) == .exited(.exited(1)))
        #expect(end(.never, .signaled(Self.sigkill)) == .exited(.signaled(Self.sigkill)))
        #expect(end(.onFailure, .exited(0)) == .exited(.exited(0)))
        #expect(end(.onFailure, .exited(1)).serviceState == .backoff)
        #expect(end(.onFailure, .signaled(Self.sigkill)).serviceState == .backoff)
        #expect(end(.always, .exited(0)).serviceState == .backoff)
        #expect(end(.always, .exited(1)).serviceState == .backoff)

        let never = Driver(Self.configuration(policy: .never))
        never.run()
        never.send(.processExited(pid: 100, status: .exited(0)))
        let rest = never.send(.postStopFinished(attempt: 1))
        #expect(never.machine.message == "exited with code 0; restart policy never")
        #expect(rest.contains(.cancelTimers) && rest.contains(.closeNotifySocket))
    }

    @Test("a failed init hook counts as a failed start")
    func initFailure() {
        let d = Driver(Self.configuration())
        d.send(.start)
        let failed = d.send(.initFinished(attempt: 1, error: "init hook exited with code 4: no config"))
        #expect(failed.first == .log("init hook exited with code 4: no config", isError: true))
        #expect(!failed.contains(where: Self.isSpawn))
        #expect(failed.contains(.runPostStopHook(attempt: 1)))
        d.send(.postStopFinished(attempt: 1))
        #expect(d.machine.message == "restarting in 0.10s after: init hook exited with code 4: no config")
        #expect(d.machine.snapshot.lastExit == nil)

        let never = Driver(Self.configuration(policy: .never))
        never.send(.start)
        never.send(.initFinished(attempt: 1, error: "init hook timed out after 2.0 seconds"))
        never.send(.postStopFinished(attempt: 1))
        #expect(never.state == .exited(nil))
        #expect(never.machine.message == "init hook timed out after 2.0 seconds; restart policy never")
    }

    @Test("late reports of another attempt or process are ignored; an unexpected spawn is killed")
    func staleReports() {
        let d = Driver(Self.configuration())
        d.run()
        #expect(d.send(.processExited(pid: 999, status: .exited(0))).isEmpty)
        #expect(d.send(.initFinished(attempt: 1, error: nil)).isEmpty)
        #expect(d.send(.postStopFinished(attempt: 1)).isEmpty)
        #expect(d.send(.timerFired(.backoff, attempt: 1)).isEmpty)
        #expect(d.send(.spawnFinished(attempt: 7, .spawned(300))) == [.signalGroup(pid: 300, signal: Self.sigkill)])
        #expect(d.machine.snapshot.state == .running)
        #expect(d.machine.snapshot.pid == 100)
    }

    @Test("each state is reported as the wire's state")
    func reportedStates() {
        let process = RunningProcess(pid: 1, startedAt: Date(), startedInstant: .now, nextCheck: .seconds(1))
        let ending = Ending(exit: .exited(1), description: "exited with code 1")
        let table: [(RunnerState, ServiceState)] = [
            (.stopped, .stopped), (.waiting, .waiting),
            (.initializing(stop: nil), .starting), (.initializing(stop: .stayDown), .stopping),
            (.spawning(stop: nil), .starting), (.spawning(stop: .startAgain), .stopping),
            (.starting(process), .starting), (.running(process), .running), (.unhealthy(process), .unhealthy),
            (.stopping(process, .requested(.stayDown), since: .now), .stopping),
            (.stopping(process, .killed(reason: "grace"), since: .now), .stopping),
            (.cleaningUp(ending, stop: nil), .backoff), (.cleaningUp(ending, stop: .stayDown), .stopping),
            (.backoff(until: .now), .backoff), (.failed(reason: "loop"), .failed), (.exited(nil), .exited),
        ]
        for (state, reported) in table {
            #expect(state.serviceState == reported, "\(state)")
            #expect(state.isAtRest == [.stopped, .failed, .exited].contains(reported), "\(state)")
        }
    }
}
