import DataTools
import Foundation
import Operations
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class OperationRegistryTests: XCTestCase {
    /// A one-shot signal an operation can wait for.
    actor Gate {
        private var open = false
        private var waiters: [CheckedContinuation<Void, Never>] = []
        func wait() async {
            if open { return }
            await withCheckedContinuation { waiters.append($0) }
        }
        func release() {
            open = true
            waiters.forEach { $0.resume() }
            waiters = []
        }
    }

    func testWatchSeesEveryUpdateInOrderThenTheEnd() async throws {
        let registry = OperationRegistry<Int>(owner: "test-owner")
        let gate = Gate()
        let id = try await registry.start(kind: "count") { context in
            await gate.wait()
            // Reported from a pool thread, synchronously, as blocking work does.
            try await runBlocking { _ in
                for i in 1...1000 {
                    context.report(item: "a") { $0.bytesDone = Int64(i); $0.step = "step \(i)" }
                }
            }
            return 1000
        }
        let stream = try await registry.watch(id)
        await gate.release()
        var seen: [Int64] = []
        var last: OperationSnapshot<Int>?
        for await s in stream {
            if !s.isTerminal, let item = s.progress.item("a") {
                seen.append(item.bytesDone)
                XCTAssertEqual(item.step, "step \(item.bytesDone)")
            }
            if let last { XCTAssertGreaterThan(s.revision, last.revision) }
            last = s
        }
        XCTAssertEqual(seen, (1...1000).map(Int64.init), "every update, once, in order")
        let end = try XCTUnwrap(last)
        XCTAssertTrue(end.isTerminal)
        XCTAssertEqual(end.result, 1000)
        XCTAssertEqual(end.progress.phase, .done)
        XCTAssertEqual(end.progress.item("a")?.bytesDone, 1000)
        XCTAssertNotNil(end.finishedAt)
    }

    func testCountsAloneAreCoalescedMilestonesAreNot() async throws {
        let registry = OperationRegistry<Void>(owner: "test-owner", publishInterval: .milliseconds(50))
        let gate = Gate()
        let id = try await registry.start(kind: "flood") { context in
            await gate.wait()
            try await runBlocking { _ in
                for i in 1...20_000 {
                    context.report(item: "a") { p in
                        p.bytesDone = Int64(i)
                        if i % 5000 == 0 { p.step = "at \(i)" }
                    }
                }
            }
        }
        let stream = try await registry.watch(id)
        await gate.release()
        var snapshots = 0
        var steps: [String] = []
        var previous: Int64 = 0
        var last: OperationSnapshot<Void>?
        for await s in stream {
            snapshots += 1
            let item = s.progress.item("a")
            let done = item?.bytesDone ?? 0
            XCTAssertGreaterThanOrEqual(done, previous, "counts never go back")
            previous = done
            if let step = item?.step, step != steps.last, !step.isEmpty {
                steps.append(step)
                // A milestone is published with the counts it was reported with, not held back.
                XCTAssertEqual(done, Int64(step.dropFirst(3)), "the milestone \(step) came with its own count")
            }
            last = s
        }
        XCTAssertEqual(steps, ["at 5000", "at 10000", "at 15000", "at 20000"], "every milestone, in order")
        XCTAssertLessThan(snapshots, 2_000, "20,000 count updates reach the watcher coalesced (saw \(snapshots))")
        XCTAssertEqual(last?.isTerminal, true)
        XCTAssertEqual(last?.progress.item("a")?.bytesDone, 20_000)
    }

    func testByteCountGatePassesOncePerStep() {
        var gate = ByteCountGate(step: 100)
        let passed = stride(from: Int64(10), through: 1000, by: 10).filter { gate.passes($0) }
        XCTAssertEqual(passed, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000])
        XCTAssertFalse(gate.passes(1050), "50 bytes past the last report is not a step")
        var fresh = ByteCountGate()
        XCTAssertFalse(fresh.passes((1 << 20) - 1))
        XCTAssertTrue(fresh.passes(1 << 20), "the default step is 1 MiB")
    }

    func testAHeldBackCountIsPublishedWithoutAnotherUpdate() async throws {
        let registry = OperationRegistry<Void>(owner: "test-owner", publishInterval: .milliseconds(100))
        let gate = Gate()
        let id = try await registry.start(kind: "quiet") { context in
            context.report(item: "a") { $0.phase = .transferring; $0.bytesDone = 1 }
            context.report(item: "a") { $0.bytesDone = 2 }  // counts only: held back for the interval
            await gate.wait()
        }
        let started = ContinuousClock.now
        for await s in try await registry.watch(id) where s.progress.item("a")?.bytesDone == 2 {
            XCTAssertFalse(s.isTerminal, "the count came on its own, not with the end")
            break
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
        await gate.release()
        _ = try await registry.wait(id)
    }

    func testProgressNeverGoesBack() async throws {
        let registry = OperationRegistry<Void>(owner: "test-owner")
        let gate = Gate()
        let id = try await registry.start(kind: "mono") { context in
            context.report(item: "db") { $0.phase = .transferring; $0.step = "dumping"; $0.bytesDone = 10; $0.bytesTotal = 5 }
            context.report(item: "db") { $0.phase = .preparing; $0.step = "counting"; $0.bytesDone = 4 }
            // Applied after the two above (updates are applied in order): when it shows, they were.
            context.report { $0.details["sentinel"] = "seen" }
            await gate.wait()
        }
        var s = try await registry.status(id)
        for await next in try await registry.watch(id) {
            s = next
            if next.progress.details["sentinel"] == "seen" { break }
        }
        let item = try XCTUnwrap(s.progress.item("db"))
        XCTAssertEqual(item.phase, .transferring)
        XCTAssertEqual(item.step, "dumping", "an earlier phase's step is not shown")
        XCTAssertEqual(item.bytesDone, 10)
        XCTAssertEqual(item.bytesTotal, 10, "a total below what was done is raised to it")
        await gate.release()
        let end = try await registry.wait(id)
        XCTAssertEqual(end.progress.item("db")?.bytesDone, 10)
    }

    func testCancelEndsTheOperationCancelled() async throws {
        let registry = OperationRegistry<Void>(owner: "test-owner")
        let id = try await registry.start(kind: "sleep") { _ in
            try await Task.sleep(for: .seconds(60))
        }
        let before = try await registry.status(id)
        XCTAssertFalse(before.isTerminal)
        let clock = ContinuousClock()
        let started = clock.now
        try await registry.cancel(id)
        let end = try await registry.wait(id)
        XCTAssertLessThan(clock.now - started, .seconds(2))
        guard case .cancelled = end.state else { return XCTFail("expected cancelled, got \(end.state)") }
        // Cancelling an ended operation changes nothing.
        let again = try await registry.cancel(id)
        guard case .cancelled = again.state else { return XCTFail("expected cancelled, got \(again.state)") }
    }

    func testFailureIsKeptWithItsError() async throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom at step 3" } }
        let registry = OperationRegistry<Void>(owner: "test-owner")
        let id = try await registry.start(kind: "fail") { _ in throw Boom() }
        let end = try await registry.wait(id)
        guard case .failed(let e) = end.state else { return XCTFail("expected failed, got \(end.state)") }
        XCTAssertEqual("\(e)", "boom at step 3")
    }

    func testListStatusAndUnknownIDs() async throws {
        let registry = OperationRegistry<String>(owner: "pg-sidecar-service")
        let a = try await registry.start(id: "first", kind: "backup", labels: ["backup_id": "20260301000000"]) { _ in "a" }
        let b = try await registry.start(kind: "restore") { _ in "b" }
        XCTAssertTrue(b.hasPrefix("restore-"), b)
        _ = try await registry.wait(a)
        _ = try await registry.wait(b)
        let list = await registry.list()
        XCTAssertEqual(list.map(\.id), [a, b])
        XCTAssertEqual(list.map(\.kind), ["backup", "restore"])
        XCTAssertEqual(list.first?.labels["backup_id"], "20260301000000")
        XCTAssertEqual(list.map(\.result), ["a", "b"])

        do {
            _ = try await registry.start(id: "first", kind: "backup") { _ in "again" }
            XCTFail("expected alreadyExists")
        } catch let e as OperationError {
            XCTAssertEqual(e.code, .alreadyExists)
        }
        for call in ["status", "watch", "cancel"] {
            do {
                switch call {
                case "status": _ = try await registry.status("no-such-op")
                case "watch": _ = try await registry.watch("no-such-op")
                default: _ = try await registry.cancel("no-such-op")
                }
                XCTFail("\(call): expected notFound")
            } catch let e as OperationError {
                XCTAssertEqual(e.code, .notFound)
                XCTAssertTrue(e.message.contains("pg-sidecar-service"), e.message)
                XCTAssertTrue(e.message.contains("no-such-op"), e.message)
            }
        }
    }

    /// A cancelled blocking job runs its cancel action: here it kills a real tool's process group (a shell
    /// and the two sleeps it started), and nothing of it is left within a second.
    func testCancelledBlockingJobKillsItsToolsProcessGroup() async throws {
        let registry = OperationRegistry<Void>(owner: "test-owner")
        let started = Gate()
        let tool = ToolProcess(path: "/bin/sh", arguments: ["-c", "sleep 30 & sleep 30; wait"], pipeStdout: false, pipeStdin: false)
        let id = try await registry.start(kind: "tool") { context in
            try await runBlocking("test.tool") { job in
                try job.withCancelAction({ tool.kill(SIGKILL) }) {
                    try tool.start()
                    let pid = tool.pid
                    context.report(item: "sh") { $0.pid = pid; $0.phase = .transferring }
                    Task { await started.release() }
                    try tool.wait()
                }
            }
        }
        await started.wait()
        let pgid = tool.pid
        guard pgid > 0 else { return XCTFail("the tool did not start") }
        // Its pid reaches the operation's progress (applied in order, so the watch shows it).
        for await s in try await registry.watch(id) where s.progress.item("sh")?.pid == pgid { break }
        // Wait until the shell has started both sleeps (three members in its group).
        let deadline = ContinuousClock.now + .seconds(10)
        while Self.members(ofGroup: pgid).count < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertEqual(Self.members(ofGroup: pgid).count, 3, "sh and two sleeps")
        let cancelled = ContinuousClock.now
        try await registry.cancel(id)
        let end = try await registry.wait(id)
        guard case .cancelled = end.state else { return XCTFail("expected cancelled, got \(end.state)") }
        while !Self.members(ofGroup: pgid).isEmpty && ContinuousClock.now - cancelled < .seconds(1) {
            try await Task.sleep(for: .milliseconds(10))
        }
        XCTAssertEqual(Self.members(ofGroup: pgid), [], "the group is gone within 1 s")
    }

    func testWorkQueuedBehindACancelledTaskNeverStarts() async throws {
        let pool = BlockingPool(name: "test.pool", maxThreads: 1)
        let ran = LockedFlag()
        let occupied = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let blocker = Task { try await pool.run { _ in occupied.signal(); release.wait() } }
        try await runBlocking { _ in occupied.wait() }  // the pool's one thread is busy now
        let queued = Task { try await pool.run { _ in ran.set() } }
        queued.cancel()
        do {
            try await queued.value
            XCTFail("expected CancellationError")
        } catch is CancellationError {}
        release.signal()
        try await blocker.value
        XCTAssertFalse(ran.value)
    }

    /// Live processes whose process group is `pgid` (from /proc/<pid>/stat, field 5).
    static func members(ofGroup pgid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // state, ppid, pgrp: a zombie (Z) has exited.
            return fields.count > 2 && fields[0] != "Z" && Int32(fields[2]) == pgid
        }.sorted()
    }
}

final class LockedFlag: @unchecked Sendable {  // `flag` behind `lock`
    private let lock = NSLock()
    private var flag = false
    func set() { lock.withLock { flag = true } }
    var value: Bool { lock.withLock { flag } }
}

extension OperationRegistryTests {
    /// A status of its own, as the deployment-service's stack backups report: parts filled in concurrently.
    struct Tally: OperationProgressValue {
        var parts: [String: Int] = [:]
        var state = "running"
        func merged(with next: Tally) -> Tally { next }
        func hasSameMilestones(as other: Tally) -> Bool { state == other.state && parts.keys.sorted() == other.parts.keys.sorted() }
        func completed() -> Tally { var t = self; t.state = "completed"; return t }
    }

    func testAProgressOfItsOwnIsAppliedInOrderAndReadBackAfterEveryEarlierReport() async throws {
        let registry = ProgressRegistry<Tally, Int>(owner: "deployment-service")
        let id = try await registry.start(id: "stack-1", kind: "backup", initial: Tally()) { context in
            // Three parts report concurrently, from pool threads; the body then decides on the whole.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for part in ["a", "b", "c"] {
                    group.addTask {
                        try await runBlocking { _ in
                            for i in 1...500 { context.report { $0.parts[part] = i } }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let whole = await context.updated { $0.state = "finishing" }
            return whole.parts.values.reduce(0, +)
        }
        let end = try await registry.wait(id)
        XCTAssertEqual(end.result, 1500, "updated() returns the status after every report made before it")
        XCTAssertEqual(end.progress.state, "completed")
        XCTAssertEqual(end.progress.parts, ["a": 500, "b": 500, "c": 500])

        // A report after the end changes nothing; a reader waiting on one still gets an answer.
        let ended = Gate(), reported = Gate()
        let late = try await registry.start(id: "stack-2", kind: "backup", initial: Tally()) { context in
            Task {
                await ended.wait()
                let after = await context.updated { $0.parts["late"] = 1 }
                XCTAssertNil(after.parts["late"])
                await reported.release()
            }
            return 0
        }
        _ = try await registry.wait(late)
        await ended.release()
        await reported.wait()
        let after = try await registry.status(late)
        XCTAssertNil(after.progress.parts["late"])
    }
}
