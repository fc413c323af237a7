import Foundation
import Operations
import Testing

/// A pool made with a niceness runs its work on threads whose nice value is raised by that much; the
/// process's other threads (the shared pool's) keep theirs.
@Suite struct BlockingPoolNicenessTests {
    /// The calling thread's nice value: field 19 of /proc/thread-self/stat.
    static func threadNice() -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command's closing parenthesis start at field 3 (state).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 16 ? Int(fields[16]) : nil
    }

    @Test func workRunsAtTheRaisedNiceValue() async throws {
        let base = try #require(try await runBlocking { _ in Self.threadNice() })
        let pool = BlockingPool(name: "niced", maxThreads: 1, niceness: 7)
        let niced = try await pool.run { _ in Self.threadNice() }
        #expect(niced == min(base + 7, 19), "shared pool \(base), niced pool \(String(describing: niced))")
        // The same thread serves the next job at the same value (never raised twice).
        #expect(try await pool.run { _ in Self.threadNice() } == niced)
        #expect(try await runBlocking { _ in Self.threadNice() } == base)
    }
}
