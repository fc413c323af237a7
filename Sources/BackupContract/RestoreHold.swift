/// The restore a service is started for, part of the backup contract. A restore starts each service that
/// implements the contract held down: its process gets `AUTOMATE_RESTORE_ID` and
/// `AUTOMATE_RESTORE_BACKUP_ID`, and until that restore's short-term part is done it must
///
/// - refuse its own API (UNAVAILABLE, naming the restore), and
/// - answer `RestoreStatusShortTerm` for that restore id with RUNNING, phase `held`, even before
///   `Restore` is called (the deployment-service checks this before it restores anything, and fails the
///   restore naming a service that does not answer so: data is never replaced under a running service).
///
/// The supervisor keeps the variables across restarts of the service until the deployment-service
/// releases the hold, so a held service that crashes comes back held.
public struct RestoreHold: Sendable, Equatable {
    /// The variable naming the restore id.
    public static let restoreIDVariable = "AUTOMATE_RESTORE_ID"
    /// The variable naming the backup being restored.
    public static let backupIDVariable = "AUTOMATE_RESTORE_BACKUP_ID"
    /// The phase a held service reports before its restore begins.
    public static let heldPhase = "held"

    /// The variable naming a point-in-time recovery's target (`time:<timestamp>`, `lsn:<lsn>`,
    /// `backup_end`): the cluster server's init hook rebuilds its data folder from the backup's base
    /// backup and recovers to it.
    public static let recoveryTargetVariable = "AUTOMATE_RECOVERY_TARGET"
    /// The variable naming the WAL archive (the cluster's system identifier) the recovery reads.
    public static let recoveryClusterVariable = "AUTOMATE_RECOVERY_CLUSTER"

    public var restoreID: String
    public var backupID: String
    /// Set for the cluster server of a point-in-time recovery: where it stops (see ``recoveryTargetVariable``).
    public var recoveryTarget: String
    public var recoveryCluster: String

    public init(restoreID: String, backupID: String, recoveryTarget: String = "", recoveryCluster: String = "") {
        self.restoreID = restoreID
        self.backupID = backupID
        self.recoveryTarget = recoveryTarget
        self.recoveryCluster = recoveryCluster
    }

    /// The hold a process was started with, nil when its environment names none.
    public init?(environment: [String: String]) {
        guard let restoreID = environment[Self.restoreIDVariable], !restoreID.isEmpty else { return nil }
        self.init(restoreID: restoreID, backupID: environment[Self.backupIDVariable] ?? "",
                  recoveryTarget: environment[Self.recoveryTargetVariable] ?? "", recoveryCluster: environment[Self.recoveryClusterVariable] ?? "")
    }

    /// The variables the held process (and its hooks) get.
    public var environment: [String: String] {
        var variables = [Self.restoreIDVariable: restoreID, Self.backupIDVariable: backupID]
        if !recoveryTarget.isEmpty {
            variables[Self.recoveryTargetVariable] = recoveryTarget
            variables[Self.recoveryClusterVariable] = recoveryCluster
        }
        return variables
    }
}
