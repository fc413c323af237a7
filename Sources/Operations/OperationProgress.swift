/// How far an operation (a backup, a restore, an export) has come: one type from the worker that measures
/// it to the wire that reports it.
///
/// Progress only moves forward: ``merge(_:)`` (which `OperationRegistry` applies to every update) keeps
/// the larger byte and item counts and the later phase, overall and per item, so a watcher never sees a
/// value go back.
public struct OperationProgress: OperationProgressValue {
    /// Where an operation or one of its items is. Ordered: a later phase is never followed by an earlier one.
    public enum Phase: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
        /// Not started.
        case pending
        /// Getting ready: checking, counting, verifying inputs, creating targets.
        case preparing
        /// Moving the bulk of the bytes (dumping, archiving, restoring, exporting).
        case transferring
        /// Checking what was moved (checksums, row or document counts).
        case verifying
        /// The data is in place and usable; the rest loads in the background (a restore's long-term part).
        case loading
        /// Completing: uploads completed, metadata written, databases renamed.
        case finishing
        /// Done.
        case done

        public static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }

        public var description: String {
            switch self {
            case .pending: "pending"
            case .preparing: "preparing"
            case .transferring: "transferring"
            case .verifying: "verifying"
            case .loading: "loading"
            case .finishing: "finishing"
            case .done: "done"
            }
        }
    }

    /// One part of an operation: a database, an index, an archive.
    public struct Item: Sendable, Equatable {
        /// The part's name (`shop`, `files/profiles`), unique within the operation.
        public var name: String
        public var phase: Phase = .pending
        /// What it does right now, in a word (`counting`, `dumping`, `uploading`).
        public var step: String = ""
        public var bytesDone: Int64 = 0
        /// An estimate while running (0 when unknown).
        public var bytesTotal: Int64 = 0
        /// Things counted: documents, rows, archive entries, shards.
        public var itemsDone: Int64 = 0
        public var itemsTotal: Int64 = 0
        /// Where its output goes or comes from (an object key), when known.
        public var location: String = ""
        /// The pid of the tool working on it (its process group), 0 when none.
        public var pid: Int32 = 0
        /// Why it failed, when it did.
        public var error: String = ""
        /// Facts learned while working on it (a compressed size so far).
        public var details: [String: String] = [:]

        public init(name: String, phase: Phase = .pending, step: String = "", bytesTotal: Int64 = 0, itemsTotal: Int64 = 0) {
            self.name = name
            self.phase = phase
            self.step = step
            self.bytesTotal = bytesTotal
            self.itemsTotal = itemsTotal
        }

        /// `self` moved forward by `next`: counts and phase never go back; text fields take `next`'s.
        /// A step reported with an earlier phase than the item's is ignored.
        public func merged(with next: Item) -> Item {
            var m = next
            m.phase = max(phase, next.phase)
            if next.phase < phase { m.step = step }
            m.bytesDone = max(bytesDone, next.bytesDone)
            m.bytesTotal = max(m.bytesDone, next.bytesTotal == 0 ? bytesTotal : next.bytesTotal)
            m.itemsDone = max(itemsDone, next.itemsDone)
            m.itemsTotal = max(m.itemsDone, next.itemsTotal == 0 ? itemsTotal : next.itemsTotal)
            m.details = details.merging(next.details) { $1 }
            return m
        }
    }

    /// The operation's phase as a whole.
    public var phase: Phase
    /// What it does right now, in a word.
    public var step: String
    /// Sums over the items, or the operation's own count when it has no items.
    public var bytesDone: Int64
    public var bytesTotal: Int64
    public var itemsDone: Int64
    public var itemsTotal: Int64
    /// The parts, in the order they were declared.
    public var items: [Item]
    /// Facts learned while running (`server_version`), shown with the status.
    public var details: [String: String]

    public init(phase: Phase = .pending, step: String = "", items: [Item] = [], details: [String: String] = [:]) {
        self.phase = phase
        self.step = step
        self.bytesDone = 0
        self.bytesTotal = 0
        self.itemsDone = 0
        self.itemsTotal = 0
        self.items = items
        self.details = details
        recomputeTotals()
    }

    /// Changes the item named `name` (added at the end when new), then recomputes the sums.
    public mutating func update(item name: String, _ body: (inout Item) -> Void) {
        if let i = items.firstIndex(where: { $0.name == name }) {
            body(&items[i])
        } else {
            var item = Item(name: name)
            body(&item)
            items.append(item)
        }
        recomputeTotals()
    }

    /// The item named `name`, if any.
    public func item(_ name: String) -> Item? { items.first { $0.name == name } }

    /// Recomputes the operation's counts from its items (nothing changes when it has none).
    public mutating func recomputeTotals() {
        guard !items.isEmpty else { return }
        bytesDone = items.reduce(0) { $0 + $1.bytesDone }
        bytesTotal = items.reduce(0) { $0 + max($1.bytesTotal, $1.bytesDone) }
        itemsDone = items.reduce(0) { $0 + $1.itemsDone }
        itemsTotal = items.reduce(0) { $0 + max($1.itemsTotal, $1.itemsDone) }
    }

    /// Whether `other` differs from `self` only in its counts and details (bytes and items done or
    /// total, facts): what the registry may hold back for a moment and publish coalesced. Phases, steps,
    /// the set of items, their locations, pids and errors are milestones and published at once.
    public func hasSameMilestones(as other: OperationProgress) -> Bool {
        guard phase == other.phase, step == other.step, items.count == other.items.count else { return false }
        for (a, b) in zip(items, other.items) {
            guard a.name == b.name, a.phase == b.phase, a.step == b.step, a.location == b.location, a.pid == b.pid,
                  a.error == b.error else { return false }
        }
        return true
    }

    /// `self` moved forward by `next` (see the type's note): what the registry stores after each update.
    public func merged(with next: OperationProgress) -> OperationProgress {
        var m = next
        m.phase = max(phase, next.phase)
        if next.phase < phase { m.step = step }
        m.items = next.items.map { n in items.first { $0.name == n.name }.map { $0.merged(with: n) } ?? n }
        for old in items where !m.items.contains(where: { $0.name == old.name }) { m.items.append(old) }
        m.details = details.merging(next.details) { $1 }
        if m.items.isEmpty {
            m.bytesDone = max(bytesDone, next.bytesDone)
            m.bytesTotal = max(m.bytesDone, next.bytesTotal == 0 ? bytesTotal : next.bytesTotal)
            m.itemsDone = max(itemsDone, next.itemsDone)
            m.itemsTotal = max(m.itemsDone, next.itemsTotal == 0 ? itemsTotal : next.itemsTotal)
        } else {
            m.recomputeTotals()
        }
        return m
    }

    /// Every phase done, no tool running: the last progress of a completed operation.
    public func completed() -> OperationProgress {
        var last = self
        last.phase = .done
        for i in last.items.indices { last.items[i].phase = .done; last.items[i].pid = 0 }
        return last
    }
}
