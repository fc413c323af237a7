/// Latency samples and throughput of one benchmark case.
struct Measurement {
    var name: String
    var inFlight: Int
    var calls: Int
    var seconds: Double
    var p50Micros: Double
    var p99Micros: Double

    var callsPerSecond: Double { Double(calls) / seconds }

    /// Runs `call` from `inFlight` concurrent loops: a warm-up, then `seconds` of measurement.
    static func run(
        name: String, inFlight: Int, seconds: Double, warmup: Double,
        call: @escaping @Sendable () async throws -> Void
    ) async throws -> Measurement {
        let clock = ContinuousClock()
        _ = try await loops(inFlight: inFlight, until: clock.now + .milliseconds(Int(warmup * 1000)), call: call)
        let start = clock.now
        let samples = try await loops(inFlight: inFlight, until: start + .milliseconds(Int(seconds * 1000)), call: call)
        let elapsed = clock.now - start
        let sorted = samples.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return .nan }
            let index = min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)
            return Double(sorted[max(0, index)]) / 1000
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Measurement(
            name: name, inFlight: inFlight, calls: sorted.count, seconds: seconds,
            p50Micros: percentile(0.50), p99Micros: percentile(0.99))
    }

    /// Each loop calls back to back until `deadline`, recording each call's latency in nanoseconds.
    private static func loops(
        inFlight: Int, until deadline: ContinuousClock.Instant, call: @escaping @Sendable () async throws -> Void
    ) async throws -> [Int64] {
        try await withThrowingTaskGroup(of: [Int64].self) { group in
            for _ in 0..<inFlight {
                group.addTask {
                    let clock = ContinuousClock()
                    var samples: [Int64] = []
                    samples.reserveCapacity(1 << 16)
                    while clock.now < deadline {
                        let begin = clock.now
                        try await call()
                        let d = clock.now - begin
                        samples.append(d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
                    }
                    return samples
                }
            }
            var all: [Int64] = []
            for try await samples in group { all += samples }
            return all
        }
    }
}
