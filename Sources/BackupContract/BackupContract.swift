// The backup contract's methods are the generated `BackupService` descriptors (Proto/backup_contract.rpc.swift)
// and the deployment-service's are `DeploymentService` (Proto/deployment_service.rpc.swift); the .proto files
// say what each method does.

public typealias BackupProgress = Automate_Backup_V1_Progress
public typealias BackupOperationState = Automate_Backup_V1_OperationState
public typealias BackupArtifact = Automate_Backup_V1_Artifact
public typealias ServiceBackupStatus = Automate_Backup_V1_BackupStatus
public typealias ServiceRestoreStatus = Automate_Backup_V1_RestoreStatus

/// The deployment-service's typed methods (the generated ``DeploymentService``) under a name that does
/// not collide with the `DeploymentService` module, inside which the bare name means the module.
public typealias StackDeploymentService = DeploymentService

public typealias StackBackup = Automate_Deployment_V1_StackBackup
public typealias StackRestore = Automate_Deployment_V1_StackRestore
/// Where a point-in-time recovery stops, and what it reached.
public typealias PointInTimeTarget = Automate_Deployment_V1_PointInTimeTarget
public typealias PointInTimeResult = Automate_Deployment_V1_PointInTimeResult
