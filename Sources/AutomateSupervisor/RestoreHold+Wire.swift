import BackupContract

extension RestoreHold {
    /// The hold a `StartService` request carries, nil when it has none.
    init?(_ wire: Automate_Supervisor_V1_RestoreHold?) {
        guard let wire, !wire.restoreID.isEmpty else { return nil }
        self.init(restoreID: wire.restoreID, backupID: wire.backupID, recoveryTarget: wire.recoveryTarget, recoveryCluster: wire.recoveryCluster)
    }
}
