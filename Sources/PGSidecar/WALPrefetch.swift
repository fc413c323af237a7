import BackupRepository
import Foundation
import Operations

/// Reads ahead of a recovery's `restore_command`: PostgreSQL asks for one WAL segment at a time and
/// replays it before it asks for the next, so while it replays segment N the next ``depth`` segments of
/// the same timeline are already being read from the repository (fetched, decompressed, checked), and
/// the next request is answered from what was read (bytes in memory, or files of the hand-off folder:
/// ``FetchedWAL``). At most ``depth`` segments are held (16 MiB each); what the recovery no longer asks
/// for (it stopped at its target, or moved to another timeline) is dropped (hand-off files removed) at
/// the next request or a minute after the last one.
///
/// A segment read ahead is checked exactly as one read on request (the fetch is the same); a read-ahead
/// that failed (past the end of the archive, a damaged file) is not remembered as an answer: that
/// request reads again and reports its own outcome.
final class WALPrefetch: @unchecked Sendable {  // `entries` behind `lock`
    /// Segments read ahead of the one asked for.
    static let depth = 3
    /// How long read-ahead bytes nobody asked for are kept.
    static let expiry: Duration = .seconds(60)

    private final class Entry: @unchecked Sendable {  // `result` behind the prefetcher's lock, set before `ready` is signalled
        let ready = DispatchSemaphore(value: 0)
        var result: Result<FetchedWAL, Error>?
        /// Dropped before its read finished: the read discards what it got.
        var dropped = false
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    /// Segment requests, and those answered from a read-ahead (for the log and tests).
    private var requests = 0
    private var answeredAhead = 0
    /// When the last request came, and whether a task is waiting to drop what nobody asked for since.
    private var lastRequest = ContinuousClock.now
    private var expiryScheduled = false

    init() {}

    /// The file `name` of `cluster`: from what was read ahead, else read now (blocking); a segment's
    /// request starts reading the following ones. `fetch` reads and checks one file (blocking; read-aheads
    /// call it on the blocking pool).
    func get(name: String, cluster: String, fetch: @escaping @Sendable (_ name: String, _ cluster: String) throws -> FetchedWAL) throws -> FetchedWAL {
        guard let segment = WALSegment(name: name) else { return try fetch(name, cluster) }
        let following = (1...Self.depth).map { WALSegment(timeline: segment.timeline, number: segment.number + UInt64($0)).name }
        let keep = Set(following.map { Self.key($0, cluster) })
        lock.lock()
        requests += 1
        lastRequest = .now
        let scheduleExpiry = !expiryScheduled
        expiryScheduled = true
        let entry = entries.removeValue(forKey: Self.key(name, cluster))
        for (key, dropped) in entries where !keep.contains(key) { drop(dropped) }
        entries = entries.filter { keep.contains($0.key) }
        var starting: [(String, Entry)] = []
        for next in following where entries[Self.key(next, cluster)] == nil {
            let e = Entry()
            entries[Self.key(next, cluster)] = e
            starting.append((next, e))
        }
        lock.unlock()
        for (next, e) in starting { readAhead(next, cluster: cluster, into: e, fetch: fetch) }
        if scheduleExpiry { expireWhenIdle() }
        if let entry {
            entry.ready.wait()
            if case .success(let fetched)? = lock.withLock({ entry.result }) {
                lock.withLock { answeredAhead += 1 }
                return fetched
            }
        }
        return try fetch(name, cluster)
    }

    /// How many segments are held or being read (for tests).
    var held: Int { lock.withLock { entries.count } }

    /// Segment requests so far and how many a read-ahead answered.
    var counts: (requests: Int, answeredAhead: Int) { lock.withLock { (requests, answeredAhead) } }

    private static func key(_ name: String, _ cluster: String) -> String { cluster + "/" + name }

    /// Drops an entry taken out of `entries` (under `lock`): what it read is discarded, now or when its
    /// read ends.
    private func drop(_ entry: Entry) {
        if case .success(let fetched)? = entry.result { fetched.discard() } else { entry.dropped = true }
    }

    private func readAhead(_ name: String, cluster: String, into entry: Entry,
                           fetch: @escaping @Sendable (String, String) throws -> FetchedWAL) {
        let lock = self.lock
        Task.detached {
            let result: Result<FetchedWAL, Error>
            do {
                result = .success(try await runBlocking("pg.wal-prefetch") { _ in try fetch(name, cluster) })
            } catch {
                result = .failure(error)
            }
            let dropped = lock.withLock {
                entry.result = result
                return entry.dropped
            }
            if dropped, case .success(let fetched) = result { fetched.discard() }
            entry.ready.signal()
        }
    }

    /// One task for the whole recovery: once no request has come for ``expiry``, drops what was read
    /// ahead and never asked for; reads still running are looked at again an ``expiry`` later.
    private func expireWhenIdle() {
        Task.detached { [self] in
            var deadline = lock.withLock { lastRequest + Self.expiry }
            while true {
                try? await Task.sleep(until: deadline, clock: .continuous)
                let next: ContinuousClock.Instant? = lock.withLock {
                    if ContinuousClock.now < lastRequest + Self.expiry { return lastRequest + Self.expiry }
                    for entry in entries.values where entry.result != nil { drop(entry) }
                    entries = entries.filter { $0.value.result == nil }
                    if entries.isEmpty { expiryScheduled = false; return nil }
                    return .now + Self.expiry
                }
                guard let next else { return }
                deadline = next
            }
        }
    }
}
