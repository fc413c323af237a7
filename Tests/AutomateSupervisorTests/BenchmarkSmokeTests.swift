import Foundation
import Testing

/// Every `scripts/bench-*.sh` runs in its smoke mode (tiny sizes, one run, this build's debug
/// binaries), so that no benchmark goes stale: a script that breaks fails here, and a new script
/// without a smoke mode fails the first test.
@Suite("Benchmark scripts (smoke mode)", .serialized)
struct BenchmarkSmokeTests {
    /// The lines each script must print (its figures and ratio lines) for the run to count.
    static let expectedLines: [String: [String]] = [
        "bench-backup.sh": [
            "== where the time went", "== medians", "automate / floor = ", "automate / by hand = ", "chunked / plain (median above) = ",
            "chunked / restic = ", "of the first (target <= 2%)", "chunked / by hand = ",
        ],
        "bench-supervisor.sh": ["== results (medians)", "killed service back (minus backoff)", "supervisor RSS now / peak"],
        "bench-sidecars.sh": ["sidecar/floor = ", "pg-sidecar-service peak RSS", "es-sidecar-service peak RSS"],
        "bench-gateway.sh": ["gateway / nginx", "gateway / moto", "peak RSS"],
        "bench-chunks.sh": ["chunked / plain = ", "chunked added / first = ", "chunked / restic (second backup time) = ", "chunked / restic = "],
        "bench-pitr.sh": ["TPS, archiving on (median)", "overhead", "WAL segments archived during the runs"],
    ]

    static var scripts: [String] {
        let directory = TestStack.repository + "/scripts"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("bench-") && $0.hasSuffix(".sh") }.sorted()
    }

    @Test("every benchmark script has a smoke mode and known result lines")
    func everyScriptIsCovered() throws {
        #expect(Self.scripts.count >= 4, "found \(Self.scripts) in scripts/")
        for script in Self.scripts {
            let text = try String(contentsOfFile: TestStack.repository + "/scripts/" + script, encoding: .utf8)
            #expect(text.contains("lib/bench.sh") || text.contains("--smoke"), "\(script) has no --smoke mode")
            #expect(Self.expectedLines[script] != nil, "\(script): add its result lines to BenchmarkSmokeTests.expectedLines")
        }
    }

    @Test("smoke run", .timeLimit(.minutes(10)), arguments: BenchmarkSmokeTests.scripts)
    func smoke(script: String) async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["BENCH_BIN"] = TestStack.binDirectory
        // The stack the script starts must not inherit a test's home.
        environment["AUTOMATE_HOME"] = nil
        let result = try await CommandResult.run(
            "/bin/bash", [TestStack.repository + "/scripts/" + script, "--smoke"], environment: environment)
        let printed = result.output + result.error
        #expect(result.succeeded, "\(script) --smoke: \(result.status)\n\(printed.suffix(4000))")
        for line in Self.expectedLines[script] ?? [] {
            #expect(result.output.contains(line), "\(script) --smoke did not print \"\(line)\"\n\(printed.suffix(4000))")
        }
    }
}
