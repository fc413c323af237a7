import BackupContract
import Operations

/// A stack backup's status is what its operation reports in the deployment-service's ``ProgressRegistry``:
/// the orchestrator changes it one update at a time, in order, and watchers get every change of a state or
/// a phase at once, byte counts coalesced.
extension StackBackup: OperationProgressValue {
    /// The orchestrator's updates already keep what must not go back (an ended service stays ended).
    public func merged(with next: StackBackup) -> StackBackup { next }

    public func hasSameMilestones(as other: StackBackup) -> Bool {
        guard state == other.state, error == other.error, services.count == other.services.count else { return false }
        return zip(services, other.services).allSatisfy { a, b in
            a.service == b.service && a.state == b.state && a.progress.phase == b.progress.phase && a.error == b.error
                && a.artifacts.count == b.artifacts.count
        }
    }

    public func completed() -> StackBackup { self }
}

/// A stack restore's status, as its operation reports it (see the note on ``StackBackup``).
extension StackRestore: OperationProgressValue {
    public func merged(with next: StackRestore) -> StackRestore { next }

    public func hasSameMilestones(as other: StackRestore) -> Bool {
        guard shortTermState == other.shortTermState, longTermState == other.longTermState, error == other.error,
              shortTerm.count == other.shortTerm.count, longTerm.count == other.longTerm.count else { return false }
        let same = { (a: ServiceRestoreStatus, b: ServiceRestoreStatus) in
            a.service == b.service && a.state == b.state && a.progress.phase == b.progress.phase && a.error == b.error
        }
        return zip(shortTerm, other.shortTerm).allSatisfy(same) && zip(longTerm, other.longTerm).allSatisfy(same)
    }

    public func completed() -> StackRestore { self }
}
