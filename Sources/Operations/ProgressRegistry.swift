import Foundation

/// The long-running operations of one process (a sidecar's dumps, a service's backups, the
/// deployment-service's stack backups and restores): the stack's one operation layer. Each operation runs
/// as a task of its own; its state and progress live here, are watched as a stream of every change in
/// order, and end with it. Cancelling an operation cancels its task (and through ``BlockingPool`` the
/// tools it runs).
///
/// Updates are applied inside the actor one at a time, in the order the operation reported them (see
/// ``ProgressContext``); its end is applied after every update it reported. Ended operations are kept
/// (the most recent `keepEnded`) so that a late `status` still answers.
///
/// Watchers get every milestone (for ``OperationProgress``: a phase, a step, an item's start, end or
/// error) at once and in order; a change that is not one (bytes or items done) reaches them at most once
/// per `publishInterval`, always the latest values, and never after a later milestone. A body may so
/// report bytes as often as it reads them without flooding its watchers (or the processes those feed).
///
/// `Progress` is what the operations report: ``OperationProgress`` for the workers of the sidecars and the
/// service kit (``OperationRegistry``), the whole stack's status for the deployment-service's orchestrators.
public actor ProgressRegistry<Progress: OperationProgressValue, Result: Sendable> {
    public typealias Snapshot = ProgressSnapshot<Progress, Result>

    private enum Event: Sendable {
        /// An update, and who waits for the progress it made (``ProgressContext/updated(_:)``).
        case progress(@Sendable (inout Progress) -> Void, reply: (@Sendable (Progress) -> Void)?)
        case ended(ProgressState<Progress, Result>)
    }

    private struct Entry {
        var snapshot: Snapshot
        var task: Task<Void, Never>?
        var watchers: [UUID: AsyncStream<Snapshot>.Continuation] = [:]
        /// The revision watchers saw last, and when.
        var publishedRevision: UInt64 = 0
        var publishedAt: ContinuousClock.Instant = .now
        /// A coalesced change waits for ``flush(_:)``.
        var flushScheduled = false
    }

    /// Who keeps these operations (`pg-sidecar-service`): named in errors.
    public nonisolated let owner: String
    private let keepEnded: Int
    private let publishInterval: Duration
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private var revision: UInt64 = 0

    /// - Parameters:
    ///   - owner: the process or component that runs the operations, named in every error.
    ///   - keepEnded: how many ended operations stay known (the oldest are forgotten first).
    ///   - publishInterval: how often at most a change of counts alone reaches the watchers.
    public init(owner: String, keepEnded: Int = 1000, publishInterval: Duration = .milliseconds(100)) {
        self.owner = owner
        self.keepEnded = max(1, keepEnded)
        self.publishInterval = publishInterval
    }

    /// Starts `body` as a task of its own and returns the operation's id at once.
    ///
    /// - Parameters:
    ///   - id: the operation's id; nil makes one (`<kind>-<12 hex digits>`).
    ///   - replacingEnded: with an `id` that names an ended operation, start anew under it instead of
    ///     throwing ALREADY_EXISTS.
    ///   - initial: the progress watchers see first.
    /// - Throws: ``OperationError`` `.alreadyExists` when `id` is taken.
    @discardableResult
    public func start(
        id: String? = nil, replacingEnded: Bool = false, kind: String, labels: [String: String] = [:],
        initial: Progress,
        _ body: @escaping @Sendable (ProgressContext<Progress>) async throws -> Result
    ) throws -> String {
        let id = id ?? Self.newID(prefix: kind)
        if let existing = entries[id] {
            guard replacingEnded, existing.snapshot.isTerminal else {
                throw OperationError(.alreadyExists, "\(owner) already has operation \(id) (\(Self.describe(existing.snapshot.state)))")
            }
            entries[id] = nil
            order.removeAll { $0 == id }
        }
        revision += 1
        entries[id] = Entry(snapshot: Snapshot(
            id: id, kind: kind, labels: labels, state: .running(initial), progress: initial, startedAt: Date(), finishedAt: nil,
            revision: revision))
        order.append(id)

        let (inbox, sink) = AsyncStream<Event>.makeStream(bufferingPolicy: .unbounded)
        let context = ProgressContext<Progress>(id: id) { [weak self] update, reply in
            if case .terminated = sink.yield(.progress(update, reply: reply)), let reply {
                // Reported after the operation's end (by a task it left behind): nothing changes, and a
                // reporter waiting for the progress gets it as it ended.
                Task { await self?.answer(id, reply, fallback: initial) ?? reply(initial) }
            }
        }
        // The drain is not the operation's task: cancelling the operation must not stop its updates (nor
        // its end) from being applied.
        Task { [self] in
            for await event in inbox { self.apply(id, event, fallback: initial) }
        }
        entries[id]?.task = Task {
            let end: ProgressState<Progress, Result>
            do {
                end = .completed(try await body(context))
            } catch {
                end = (Task.isCancelled || error is CancellationError) ? .cancelled : .failed(error)
            }
            sink.yield(.ended(end))
            sink.finish()
        }
        return id
    }

    /// Starts `body` under a fresh id `<idPrefix>-<12 hex digits>`; see ``start(id:replacingEnded:kind:labels:initial:_:)``.
    @discardableResult
    public func start(
        idPrefix: String, kind: String, labels: [String: String] = [:], initial: Progress,
        _ body: @escaping @Sendable (ProgressContext<Progress>) async throws -> Result
    ) throws -> String {
        try start(id: Self.newID(prefix: idPrefix), kind: kind, labels: labels, initial: initial, body)
    }

    /// `<prefix>-<12 random hex digits>`.
    public static func newID(prefix: String) -> String {
        "\(prefix)-" + (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// The operation's current snapshot.
    /// - Throws: ``OperationError`` `.notFound`, naming the owner.
    public func status(_ id: String) throws -> Snapshot {
        guard let e = entries[id] else { throw notFound(id) }
        return e.snapshot
    }

    /// Every operation known, in the order they started.
    public func list() -> [Snapshot] { order.compactMap { entries[$0]?.snapshot } }

    /// A stream that yields the current snapshot, then every change in order, and finishes after the
    /// operation's end (at once when it already ended).
    /// - Throws: ``OperationError`` `.notFound`, naming the owner.
    public func watch(_ id: String) throws -> AsyncStream<Snapshot> {
        guard let e = entries[id] else { throw notFound(id) }
        let (stream, continuation) = AsyncStream<Snapshot>.makeStream(bufferingPolicy: .unbounded)
        continuation.yield(e.snapshot)
        if e.snapshot.isTerminal {
            continuation.finish()
            return stream
        }
        let token = UUID()
        entries[id]?.watchers[token] = continuation
        continuation.onTermination = { [weak self] _ in
            Task { await self?.removeWatcher(id, token) }
        }
        return stream
    }

    /// Waits until the operation ends (or the caller is cancelled) and returns its last snapshot.
    public func wait(_ id: String) async throws -> Snapshot {
        var last = try status(id)
        for await s in try watch(id) { last = s }
        return last
    }

    /// Cancels the operation's task (its blocking jobs run their cancel actions at once); returns the
    /// snapshot as it is now (the end follows when the task has stopped). Cancelling an ended
    /// operation changes nothing.
    /// - Throws: ``OperationError`` `.notFound`, naming the owner.
    @discardableResult
    public func cancel(_ id: String) throws -> Snapshot {
        guard let e = entries[id] else { throw notFound(id) }
        e.task?.cancel()
        return e.snapshot
    }

    /// Cancels the operation, then waits until it ended (its tools are gone, its cleanup done), at most
    /// `timeout`; returns its snapshot then, still running if it did not end in time.
    /// - Throws: ``OperationError`` `.notFound`, naming the owner.
    public func cancel(_ id: String, waitingUpTo timeout: Duration) async throws -> Snapshot {
        let now = try cancel(id)
        if now.isTerminal { return now }
        let ended = try await withThrowingTaskGroup(of: Snapshot?.self) { group in
            group.addTask { try await self.wait(id) }
            group.addTask { try await Task.sleep(for: timeout); return nil }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
        return try ended ?? status(id)
    }

    /// Forgets an ended operation; false when it is unknown or still running.
    @discardableResult
    public func remove(_ id: String) -> Bool {
        guard let e = entries[id], e.snapshot.isTerminal else { return false }
        entries[id] = nil
        order.removeAll { $0 == id }
        return true
    }

    // MARK: internals

    /// Gives `reply` operation `id`'s progress (`fallback` when it is no longer known).
    private func answer(_ id: String, _ reply: @Sendable (Progress) -> Void, fallback: Progress) {
        reply(entries[id]?.snapshot.progress ?? fallback)
    }

    /// Applies one event of operation `id`; a waiting reporter gets the progress then (`fallback` when the
    /// operation is no longer known).
    private func apply(_ id: String, _ event: Event, fallback: Progress) {
        var reply: (@Sendable (Progress) -> Void)?
        if case .progress(_, let r) = event { reply = r }
        guard var e = entries[id], !e.snapshot.isTerminal else {
            if let reply { answer(id, reply, fallback: fallback) }
            return
        }
        let old = e.snapshot
        let state: ProgressState<Progress, Result>
        let progress: Progress
        var milestone = true
        switch event {
        case .progress(let update, _):
            var next = old.progress
            update(&next)
            progress = old.progress.merged(with: next)
            defer { reply?(progress) }
            if progress == old.progress { return }
            state = .running(progress)
            milestone = !progress.hasSameMilestones(as: old.progress)
        case .ended(let end):
            state = end
            if case .completed = end { progress = old.progress.completed() } else { progress = old.progress }
        }
        revision += 1
        e.snapshot = Snapshot(
            id: old.id, kind: old.kind, labels: old.labels, state: state, progress: progress, startedAt: old.startedAt,
            finishedAt: state.isTerminal ? Date() : nil, revision: revision)
        let now = ContinuousClock.now
        let due = e.publishedAt.advanced(by: publishInterval)
        if milestone || state.isTerminal || now >= due {
            publish(&e, at: now)
        } else if !e.flushScheduled {
            e.flushScheduled = true
            Task { [self] in
                try? await Task.sleep(until: due, clock: .continuous)
                self.flush(id)
            }
        }
        if state.isTerminal {
            for continuation in e.watchers.values { continuation.finish() }
            e.watchers = [:]
            e.task = nil
        }
        entries[id] = e
        if state.isTerminal { forgetOldEnded() }
    }

    /// Gives the watchers the entry's snapshot, unless they have it already.
    private func publish(_ e: inout Entry, at now: ContinuousClock.Instant) {
        e.flushScheduled = false
        guard e.snapshot.revision != e.publishedRevision else { return }
        e.publishedRevision = e.snapshot.revision
        e.publishedAt = now
        for continuation in e.watchers.values { continuation.yield(e.snapshot) }
    }

    /// Publishes a change of counts held back by `apply` (nothing when a later change published it).
    private func flush(_ id: String) {
        guard var e = entries[id], e.flushScheduled else { return }
        publish(&e, at: .now)
        entries[id] = e
    }

    private func removeWatcher(_ id: String, _ token: UUID) {
        entries[id]?.watchers[token] = nil
    }

    private func forgetOldEnded() {
        let ended = order.filter { entries[$0]?.snapshot.isTerminal == true }
        guard ended.count > keepEnded else { return }
        for id in ended.prefix(ended.count - keepEnded) {
            entries[id] = nil
            order.removeAll { $0 == id }
        }
    }

    private func notFound(_ id: String) -> OperationError {
        OperationError(.notFound, "\(owner) does not know operation \"\(id)\" (it may have restarted since it was started)")
    }

    private static func describe(_ state: ProgressState<Progress, Result>) -> String {
        switch state {
        case .running: "running"
        case .completed: "completed"
        case .failed(let e): "failed: \(e)"
        case .cancelled: "cancelled"
        }
    }
}

/// The registry of operations that report ``OperationProgress`` (the sidecars' and the service kit's).
public typealias OperationRegistry<Result: Sendable> = ProgressRegistry<OperationProgress, Result>

extension ProgressRegistry where Progress == OperationProgress {
    /// Starts `body` with an empty ``OperationProgress``; see ``start(id:replacingEnded:kind:labels:initial:_:)``.
    @discardableResult
    public func start(
        id: String? = nil, replacingEnded: Bool = false, kind: String, labels: [String: String] = [:],
        _ body: @escaping @Sendable (OperationContext) async throws -> Result
    ) throws -> String {
        try start(id: id, replacingEnded: replacingEnded, kind: kind, labels: labels, initial: OperationProgress(), body)
    }

    /// Starts `body` with an empty ``OperationProgress`` under a fresh id `<idPrefix>-<12 hex digits>`.
    @discardableResult
    public func start(
        idPrefix: String, kind: String, labels: [String: String] = [:],
        _ body: @escaping @Sendable (OperationContext) async throws -> Result
    ) throws -> String {
        try start(idPrefix: idPrefix, kind: kind, labels: labels, initial: OperationProgress(), body)
    }
}

extension ProgressRegistry where Result == Progress {
    /// For operations whose result is their final status (a status they build as they run, like the
    /// deployment-service's stack backups): operation `id`'s status, then every change in order, until it
    /// ends. Throws like ``watch(_:)``.
    public func statuses(_ id: String) throws -> AsyncStream<Progress> {
        let updates = try watch(id)
        return AsyncStream { continuation in
            let forward = Task {
                for await snapshot in updates { continuation.yield(snapshot.status) }
                continuation.finish()
            }
            continuation.onTermination = { _ in forward.cancel() }
        }
    }
}
