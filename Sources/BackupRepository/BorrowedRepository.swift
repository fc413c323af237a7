import Foundation

/// While `automate restore` reads a repository other than the stack's own, the gateway's overlay points
/// at it for the restore only, and the stack's own overlay is kept aside in a file next to it (empty when
/// there was none). That file's presence says the gateway serves a lent repository: the
/// deployment-service writes nothing of its own there (start-up reconciliation waits), and the restore
/// puts the own overlay back when it ends.
public enum BorrowedRepository {
    /// `<home>/config/backup-gateway.own-repository`.
    public static func markerPath(home: String) -> String { home + "/config/backup-gateway.own-repository" }
}
