import AutomateManifest
import AutomateSupervisor
import Testing

@Suite("Restart backoff")
struct RestartBackoffTests {
    private func spec(limit: Int = 3) -> RestartSpec {
        var spec = RestartSpec()
        spec.backoffBase = .milliseconds(100)
        spec.backoffMax = .seconds(2)
        spec.crashLoopLimit = limit
        spec.crashLoopWindow = .seconds(10)
        spec.resetAfter = .seconds(5)
        return spec
    }

    @Test("delays stay within base and cap, growing by decorrelated jitter")
    func delaysBounded() {
        var backoff = RestartBackoff(spec: spec(limit: 1000))
        var now = ContinuousClock.now
        var previous: Duration = .milliseconds(100)
        for _ in 0..<200 {
            now += .milliseconds(1)
            guard case .restart(let delay) = backoff.record(endAt: now, uptime: .milliseconds(1)) else {
                Issue.record("unexpected crash loop")
                return
            }
            #expect(delay >= .milliseconds(100))
            #expect(delay <= .seconds(2))
            #expect(delay <= max(.milliseconds(100), previous * 3))
            previous = delay
        }
    }

    @Test("more restarts than the limit within the window is a crash loop; old ones age out")
    func crashLoop() {
        var backoff = RestartBackoff(spec: spec(limit: 3))
        let start = ContinuousClock.now
        for i in 0..<3 {
            #expect(backoff.record(endAt: start + .seconds(i), uptime: .zero) != .crashLoop(restarts: 3, within: .seconds(10)))
        }
        #expect(backoff.record(endAt: start + .seconds(3), uptime: .zero) == .crashLoop(restarts: 3, within: .seconds(10)))
        var aging = RestartBackoff(spec: spec(limit: 3))
        for i in 0..<3 { _ = aging.record(endAt: start + .seconds(i * 6), uptime: .zero) }
        if case .crashLoop = aging.record(endAt: start + .seconds(18), uptime: .zero) {
            Issue.record("restarts 6 s apart with a 10 s window must not count as a loop")
        }
    }

    @Test("a long enough run resets the history")
    func resetAfterUptime() {
        var backoff = RestartBackoff(spec: spec(limit: 2))
        let start = ContinuousClock.now
        _ = backoff.record(endAt: start, uptime: .zero)
        _ = backoff.record(endAt: start + .seconds(1), uptime: .zero)
        if case .crashLoop = backoff.record(endAt: start + .seconds(2), uptime: .seconds(6)) {
            Issue.record("an end after running past reset_after must reset the crash-loop window")
        }
    }
}
