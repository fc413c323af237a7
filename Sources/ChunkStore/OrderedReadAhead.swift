import Foundation

/// Computes `count` results on ``workers`` threads of its own, at most ``window`` ahead of the consumer,
/// and hands them over in order: a restore's fetching and opening of chunks runs beside the thread that
/// writes them out. The first error (a worker's, or the consumer's) stops the workers; ``finish()`` waits
/// for them to end.
final class OrderedReadAhead<Output>: @unchecked Sendable {  // every field is guarded by `condition`
    /// Threads computing results.
    static var workers: Int { min(2, max(1, ProcessInfo.processInfo.activeProcessorCount)) }

    private let condition = NSCondition()
    private let count: Int
    private let window: Int
    private var claimed = 0
    private var taken = 0
    private var done: [Int: Result<Output, any Error>] = [:]
    private var stopped = false
    private var running = 0

    /// Starts the workers. `makeWork` runs once on each worker's thread and returns its function from an
    /// index to a result (so each thread can hold state of its own, such as a decompression context).
    init(count: Int, window: Int, name: String, makeWork: @escaping @Sendable () -> (Int) throws -> Output) {
        self.count = count
        self.window = max(1, window)
        let workers = min(Self.workers, max(1, count))
        running = workers
        for n in 0..<workers {
            let thread = Thread { [self] in run(makeWork()) }
            thread.name = "\(name) \(n)"
            thread.start()
        }
    }

    private func run(_ work: (Int) throws -> Output) {
        while true {
            let next: Int? = condition.withLock {
                while !stopped && claimed < count && claimed >= taken + window { condition.wait() }
                guard !stopped, claimed < count else { return nil }
                claimed += 1
                return claimed - 1
            }
            guard let next else { break }
            let result = Result { try work(next) }
            condition.withLock {
                done[next] = result
                if case .failure = result { stopped = true }
                condition.broadcast()
            }
        }
        condition.withLock {
            running -= 1
            condition.broadcast()
        }
    }

    /// The result for `index` (called with 0, 1, 2, … in order), waiting for it; throws its error.
    func take(_ index: Int) throws -> Output {
        try condition.withLock {
            while done[index] == nil { condition.wait() }
            let result = done.removeValue(forKey: index)!
            taken = index + 1
            condition.broadcast()
            return try result.get()
        }
    }

    /// Stops the workers (what they compute is dropped) and waits until every one has ended.
    func finish() {
        condition.withLock {
            stopped = true
            condition.broadcast()
            while running > 0 { condition.wait() }
            done.removeAll()
        }
    }
}
