/// The `[hooks]` table: time limits of the lifecycle hooks in `hooks/<service>/`.
public struct HookSpec: Sendable, Equatable {
    /// Default time limit of the `init` hook: 120 seconds.
    public static let defaultInitTimeout: Duration = .seconds(120)
    /// Default time limit of the `post-stop` hook: 30 seconds.
    public static let defaultPostStopTimeout: Duration = .seconds(30)

    /// Time limit of the `init` hook. Default 120s.
    public var initTimeout: Duration
    /// Time limit of the `post-stop` hook. Default 30s.
    public var postStopTimeout: Duration
    /// The folder under `hooks/` the hooks come from. Default nil: the service's name. Not a manifest
    /// key: an external server's watcher (``ExternalSettings``) uses `external`, whatever service it
    /// stands in for.
    public var folder: String?

    /// Creates a hook spec; every argument defaults to the documented default.
    public init(
        initTimeout: Duration = HookSpec.defaultInitTimeout,
        postStopTimeout: Duration = HookSpec.defaultPostStopTimeout
    ) {
        self.initTimeout = initTimeout
        self.postStopTimeout = postStopTimeout
    }
}
