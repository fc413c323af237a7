/// When the supervisor restarts a service whose process exited (`[restart] policy`).
public enum RestartPolicy: String, Sendable, CaseIterable {
    /// Restart after any exit, clean or not.
    case always
    /// Restart only after a non-zero exit status or death by a signal the supervisor did not send. The default.
    case onFailure = "on-failure"
    /// Never restart; an exit leaves the service stopped (clean exit) or failed.
    case never
}
