import CAutomateShims
import Foundation

/// A bounded set of threads for blocking work (child tools, zstd, libpq, libcurl transfers), so that it
/// never runs on Swift's cooperative pool, and so that its cancellation reaches it.
///
/// ``run(_:_:)`` queues the work and suspends the caller until it is done. When the awaiting task is
/// cancelled the job is marked cancelled and its cancel actions run at once (on the cancelling thread);
/// work still queued never starts (its caller resumes at once with `CancellationError`). Threads are made on demand up to `maxThreads` and stay for reuse.
public final class BlockingPool: @unchecked Sendable {  // state behind `condition`
    /// The process's shared pool (64 threads).
    public static let shared = BlockingPool(name: "automate.blocking", maxThreads: 64)

    private struct Work {
        let job: BlockingJob
        let name: String
        let run: () -> Void
        let skip: () -> Void
    }

    public let name: String
    public let maxThreads: Int
    /// The nice value of the pool's threads (0: the process's own; higher: less CPU under contention).
    public let niceness: Int32
    private let condition = NSCondition()
    private var queue: [Work] = []
    private var head = 0
    private var threads = 0
    private var idle = 0

    /// - Parameter niceness: raises the nice value of each of the pool's threads by this much (Linux
    ///   sets it per thread); a thread cannot take it back, so give such work a pool of its own.
    public init(name: String, maxThreads: Int, niceness: Int32 = 0) {
        self.name = name
        self.maxThreads = max(1, maxThreads)
        self.niceness = max(0, niceness)
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    ///
    /// With `observingCancellation` false the work always runs to its end and its job is never cancelled
    /// (short calls whose callers may be cleaning up after a cancellation: writing a failed status,
    /// deleting what a cancelled backup wrote).
    ///
    /// - Throws: what `body` throws; `CancellationError` when the caller was cancelled before the work
    ///   started.
    public func run<T: Sendable>(
        _ name: String = "blocking", observingCancellation: Bool = true, _ body: @escaping @Sendable (BlockingJob) throws -> T
    ) async throws -> T {
        let job = BlockingJob()
        guard observingCancellation else { return try await submit(job, name, body) }
        return try await withTaskCancellationHandler {
            try await submit(job, name, body)
        } onCancel: {
            job.cancel()
            dropIfQueued(job)
        }
    }

    /// Queues `body` as `job` and waits for its result.
    private func submit<T: Sendable>(_ job: BlockingJob, _ name: String, _ body: @escaping @Sendable (BlockingJob) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            enqueue(Work(
                job: job, name: name,
                run: { continuation.resume(with: Swift.Result { try body(job) }) },
                skip: { continuation.resume(throwing: CancellationError()) }))
        }
    }

    /// Takes a cancelled job's work off the queue (if no thread took it yet) and resumes its caller with
    /// `CancellationError` at once, instead of when a thread frees up.
    private func dropIfQueued(_ job: BlockingJob) {
        condition.lock()
        let index = queue[head...].firstIndex { $0.job === job }
        let work = index.map { queue.remove(at: $0) }
        condition.unlock()
        work?.skip()
    }

    private func enqueue(_ work: Work) {
        condition.lock()
        // Cancelled before it was queued (the flag is set before `dropIfQueued` takes the lock, so one of
        // the two sees the other).
        if work.job.isCancelled {
            condition.unlock()
            work.skip()
            return
        }
        queue.append(work)
        // A thread per job waiting beyond the idle ones (up to the bound): a job that waits for another
        // never waits for a thread that is not coming.
        let spawn = queue.count - head > idle && threads < maxThreads
        if spawn { threads += 1 }
        condition.signal()
        condition.unlock()
        if spawn {
            let thread = Thread { [self] in serve() }
            thread.name = name
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func serve() {
        // This thread only: the process's other threads keep their priority. Best effort.
        if niceness > 0 { _ = automate_thread_renice(niceness) }
        while true {
            condition.lock()
            idle += 1
            while head == queue.count { condition.wait() }
            idle -= 1
            let work = queue[head]
            head += 1
            if head > 64 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            condition.unlock()
            if work.job.isCancelled { work.skip() } else { BlockingJob.withCurrent(work.job) { work.run() } }
        }
    }
}

/// Runs blocking work on the shared ``BlockingPool``; see ``BlockingPool/run(_:observingCancellation:_:)``.
public func runBlocking<T: Sendable>(
    _ name: String = "blocking", observingCancellation: Bool = true, _ body: @escaping @Sendable (BlockingJob) throws -> T
) async throws -> T {
    try await BlockingPool.shared.run(name, observingCancellation: observingCancellation, body)
}
