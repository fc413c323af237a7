import Foundation

/// Loads tables' COPY text (as `pg_dump` writes it) over several connections at once, so that a large
/// table loads on more than one server process: PostgreSQL's COPY of one stream uses one core.
///
/// One thread (the producer) hands each table's text to ``rows(table:_:)`` in any cuts; it is cut again
/// after a whole line into batches of about `batchBytes`, and each batch goes to the first connection
/// that is free, inside a `COPY … FROM STDIN` of that table on that connection (a connection keeps its
/// COPY open while it gets batches of the same table). Every line is a row, so any cut between lines is a
/// valid COPY stream; the rows keep their values, not their order on disk. At most two batches per
/// connection wait in memory, so a slow server slows the producer down.
///
/// Each connection is a thread of its own that opens its connection, runs the `session` statements
/// (client encoding, search path) and then copies. The first error (a refused row, a lost connection)
/// stops every connection and is thrown to the producer by its next call; ``cancel()`` (any thread) makes
/// the server abandon the COPYs that run.
public final class PGParallelCopy: @unchecked Sendable {  // shared state behind `condition`; producer state used by one thread
    /// A table the COPY text is for.
    public struct Table: Sendable {
        /// `COPY schema.table (columns) FROM stdin;`
        public var statement: String
        /// How errors name it (`schema.table`).
        public var name: String

        public init(statement: String, name: String) {
            self.statement = statement
            self.name = name
        }
    }

    private struct Batch: Sendable {
        let table: Int
        let bytes: [UInt8]
    }

    private let tables: [Table]
    private let batchBytes: Int
    private let capacity: Int
    private let workers: Int

    private let condition = NSCondition()
    private var queue: [Batch] = []
    private var head = 0
    private var closed = false
    private var failure: (any Error)?
    private var running = 0
    /// How to cancel the statement each connection runs, while it is open.
    private var cancelHandles: [Int: @Sendable () -> Void] = [:]
    /// Rows each table got, as the server counted them (`COPY n`), summed over the connections.
    private var copied: [Int64]

    // The producer's own state.
    private var current: Int?
    private var pending: [UInt8] = []

    /// Starts `connections` threads, each connecting to `database` on `server`. `tables` is indexed by the
    /// `table` arguments of ``rows(table:_:)``.
    public init(server: PGServer, database: String, connections: Int, tables: [Table], session: [String], batchBytes: Int = 1 << 20) {
        self.tables = tables
        self.batchBytes = max(batchBytes, 1)
        self.workers = max(connections, 1)
        self.capacity = 2 * workers
        self.copied = Array(repeating: 0, count: tables.count)
        pending.reserveCapacity(self.batchBytes + (64 << 10))
        running = workers
        for k in 0..<workers {
            let thread = Thread { [self] in work(k, server: server, database: database, session: session) }
            thread.name = "pg.copy.\(k + 1)"
            thread.start()
        }
    }

    /// COPY text of `tables[table]`, cut anywhere. A new table flushes what was left of the previous one.
    public func rows(table: Int, _ bytes: UnsafeRawBufferPointer) throws {
        precondition(tables.indices.contains(table), "table \(table) is not one of the \(tables.count) tables")
        if current != table {
            try flush()
            current = table
        }
        pending.append(contentsOf: bytes)
        guard pending.count >= batchBytes else { return }
        guard let cut = pending.lastIndex(of: 0x0A) else { return }  // one line longer than a batch: keep it whole
        var batch = pending
        pending = Array(batch[(cut + 1)...])
        pending.reserveCapacity(batchBytes + (64 << 10))
        batch.removeSubrange((cut + 1)...)
        try send(Batch(table: table, bytes: batch))
    }

    /// The text of `tables[table]` is complete: what is left of it is sent.
    public func endTable(_ table: Int) throws {
        if current == table { try flush() }
    }

    /// Sends what is left, waits for every connection to end its COPY and close, and returns the rows the
    /// server copied per table; throws the first error of any connection.
    @discardableResult
    public func finish() throws -> [Int64] {
        var sendError: (any Error)?
        do { try flush() } catch { sendError = error }
        condition.lock()
        closed = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        let failure = self.failure
        let copied = self.copied
        condition.unlock()
        if let failure { throw failure }
        if let sendError { throw sendError }
        return copied
    }

    /// Stops: the connections abandon their COPYs (the server discards those rows) and ``finish()`` throws
    /// `CancellationError`. Any thread.
    public func cancel() {
        let handles: [@Sendable () -> Void] = condition.withLock {
            if failure == nil { failure = CancellationError() }
            closed = true
            condition.broadcast()
            return Array(cancelHandles.values)
        }
        for cancel in handles { cancel() }
    }

    private func flush() throws {
        guard let table = current, !pending.isEmpty else { return }
        let batch = Batch(table: table, bytes: pending)
        pending = []
        pending.reserveCapacity(batchBytes + (64 << 10))
        try send(batch)
    }

    private func send(_ batch: Batch) throws {
        condition.lock()
        defer { condition.unlock() }
        while failure == nil && !closed && queue.count - head >= capacity { condition.wait() }
        if let failure { throw failure }
        precondition(!closed, "PGParallelCopy used after finish()")
        queue.append(batch)
        condition.signal()
    }

    /// The next batch for a connection; nil once closed and drained, or failed.
    private func next() -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        while failure == nil && !closed && queue.count == head { condition.wait() }
        if failure != nil || queue.count == head { return nil }
        let batch = queue[head]
        head += 1
        if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        condition.broadcast()  // the producer may wait for room
        return batch
    }

    private func fail(_ error: any Error) {
        condition.withLock {
            if failure == nil { failure = error }
            condition.broadcast()
        }
    }

    private func work(_ k: Int, server: PGServer, database: String, session: [String]) {
        defer {
            condition.withLock {
                cancelHandles[k] = nil  // its connection closes as the thread ends
                running -= 1
                condition.broadcast()
            }
        }
        var copying: Int?
        let connection: PGConnection
        do {
            connection = try PGConnection(server, database: database)
            let open: Bool = condition.withLock {
                cancelHandles[k] = { connection.cancelRunningQuery() }
                return failure == nil
            }
            if open {
                for statement in Self.fixedSession + session { try connection.query(statement) }
            }
        } catch {
            fail(DataToolsError(.database, "COPY connection \(k + 1) of \(workers) to database \"\(database)\": \(error)"))
            return
        }
        do {
            while let batch = next() {
                if copying != batch.table {
                    if let t = copying { try end(connection, t) }
                    copying = nil
                    try connection.beginCopy(tables[batch.table].statement)
                    copying = batch.table
                }
                try batch.bytes.withUnsafeBytes { try connection.putCopyData($0) }
            }
            if let t = copying {
                if condition.withLock({ failure }) != nil {
                    try connection.endCopy(failing: "restore stopped")
                } else {
                    try end(connection, t)
                }
                copying = nil
            }
        } catch {
            if let t = copying {
                _ = try? connection.endCopy(failing: "restore stopped")
                fail(DataToolsError(.database, "COPY into \(tables[t].name) (connection \(k + 1) of \(workers)): \(error)"))
            } else {
                fail(error)
            }
        }
    }

    private func end(_ connection: PGConnection, _ table: Int) throws {
        let rows = try connection.endCopy()
        condition.withLock { copied[table] += rows }
    }

    /// What pg_restore sets in its sessions, before the archive's own settings.
    static let fixedSession = [
        "SET statement_timeout = 0", "SET lock_timeout = 0", "SET idle_in_transaction_session_timeout = 0",
        "SET row_security = off", "SET synchronous_commit = off",
    ]
}
