/// The backup contract's method names on the automate RPC wire (see `Proto/backup_contract.proto`).
///
/// The low-level layer, for call sites not yet on the typed descriptors: prefer `BackupService`
/// (generated from the proto's service block), which also fixes the request and response types.
public enum BackupContract {
    /// The service part of every method name.
    public static let service = "automate.backup.v1.BackupService"

    /// `CreateBackup(CreateBackupRequest) -> BackupStatus`: starts a backup under the given id and returns
    /// at once with the RUNNING status (ALREADY_EXISTS with the status if that id exists).
    public static let createBackup = "\(service)/CreateBackup"
    /// `BackupStatus(BackupStatusRequest) -> BackupStatus` (NOT_FOUND for an unknown id).
    public static let backupStatus = "\(service)/BackupStatus"
    /// `WatchBackup(BackupStatusRequest) -> stream BackupStatus`: updates until the operation ends.
    public static let watchBackup = "\(service)/WatchBackup"
    /// `ListBackups(ListBackupsRequest) -> ListBackupsResponse`.
    public static let listBackups = "\(service)/ListBackups"
    /// `DeleteBackup(DeleteBackupRequest) -> DeleteBackupResponse`.
    public static let deleteBackup = "\(service)/DeleteBackup"
    /// `Restore(RestoreRequest) -> RestoreStatus`: starts restoring; returns at once.
    public static let restore = "\(service)/Restore"
    /// `RestoreStatusShortTerm(RestoreStatusRequest) -> RestoreStatus`: the part the service must wait for.
    public static let restoreStatusShortTerm = "\(service)/RestoreStatusShortTerm"
    /// `RestoreStatusLongTerm(RestoreStatusRequest) -> RestoreStatus`: bulk data still loading while it runs.
    public static let restoreStatusLongTerm = "\(service)/RestoreStatusLongTerm"
}

public typealias BackupProgress = Automate_Backup_V1_Progress
public typealias BackupOperationState = Automate_Backup_V1_OperationState
public typealias BackupArtifact = Automate_Backup_V1_Artifact
public typealias ServiceBackupStatus = Automate_Backup_V1_BackupStatus
public typealias ServiceRestoreStatus = Automate_Backup_V1_RestoreStatus

/// The deployment-service's method names (see `Proto/deployment_service.proto`).
///
/// The low-level layer: prefer the typed descriptors of `DeploymentService`.
public enum DeploymentMethods {
    public static let service = "automate.deployment.v1.DeploymentService"
    public static let createBackup = "\(service)/CreateBackup"
    public static let watchBackup = "\(service)/WatchBackup"
    public static let backupStatus = "\(service)/BackupStatus"
    public static let cancelBackup = "\(service)/CancelBackup"
    public static let listBackups = "\(service)/ListBackups"
    public static let deleteBackups = "\(service)/DeleteBackups"
    public static let restore = "\(service)/Restore"
    public static let watchRestore = "\(service)/WatchRestore"
    public static let restoreStatus = "\(service)/RestoreStatus"
}

/// The deployment-service's typed methods (the generated ``DeploymentService``) under a name that does
/// not collide with the `DeploymentService` module, inside which the bare name means the module.
public typealias StackDeploymentService = DeploymentService

public typealias StackBackup = Automate_Deployment_V1_StackBackup
public typealias StackRestore = Automate_Deployment_V1_StackRestore
