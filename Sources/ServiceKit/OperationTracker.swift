import BackupContract
import Foundation

/// The live state of a service's backups and restores since it started, with watchers of each backup.
actor OperationTracker {
    private var backups: [String: ServiceBackupStatus] = [:]
    private var tasks: [String: Task<Void, Never>] = [:]
    private let watchers = StatusBroadcaster<ServiceBackupStatus>()
    private var restores: [String: (short: ServiceRestoreStatus, long: ServiceRestoreStatus)] = [:]
    private var restoreTasks: [String: Task<Void, Never>] = [:]

    func backup(_ id: String) -> ServiceBackupStatus? { backups[id] }
    var allBackups: [ServiceBackupStatus] { backups.values.sorted { $0.backupID < $1.backupID } }
    var running: [String] { backups.values.filter { $0.state == .running }.map(\.backupID) }

    /// Registers a new backup; false when the id is taken.
    func insert(_ status: ServiceBackupStatus) -> Bool {
        guard backups[status.backupID] == nil else { return false }
        backups[status.backupID] = status
        return true
    }

    func attach(_ id: String, task: Task<Void, Never>) { tasks[id] = task }

    func update(_ id: String, _ body: (inout ServiceBackupStatus) -> Void) {
        guard var s = backups[id] else { return }
        // An ended operation stays as it ended.
        guard s.state == .running else { return }
        body(&s)
        backups[id] = s
        watchers.publish(id, s, ended: s.state != .running)
        if s.state != .running { tasks[id] = nil }
    }

    func watch(_ id: String) -> AsyncStream<ServiceBackupStatus>? {
        guard let s = backups[id] else { return nil }
        return watchers.stream(id, current: s, ended: s.state != .running)
    }

    /// Cancels a running backup; the task marks it CANCELLED.
    func cancel(_ id: String) -> Bool {
        guard let task = tasks[id] else { return false }
        task.cancel()
        return true
    }

    func forget(_ id: String) {
        if backups[id]?.state != .running { backups[id] = nil }
    }

    // MARK: restores

    func restore(_ id: String) -> (short: ServiceRestoreStatus, long: ServiceRestoreStatus)? { restores[id] }

    func insertRestore(_ short: ServiceRestoreStatus, _ long: ServiceRestoreStatus) -> Bool {
        if let existing = restores[short.restoreID], existing.long.state == .running || existing.long.state == .completed {
            return false
        }
        restores[short.restoreID] = (short, long)
        return true
    }

    /// A restore whose short-term part is running, if any.
    func runningShortTermRestore() -> ServiceRestoreStatus? {
        restores.values.first { $0.short.state == .running }?.short
    }

    func attachRestore(_ id: String, task: Task<Void, Never>) { restoreTasks[id] = task }

    func updateRestore(_ id: String, short: ((inout ServiceRestoreStatus) -> Void)? = nil, long: ((inout ServiceRestoreStatus) -> Void)? = nil) {
        guard var r = restores[id] else { return }
        if let short, r.short.state == .running { short(&r.short) }
        if let long, r.long.state == .running { long(&r.long) }
        restores[id] = r
    }
}
