/// What waiting for a service's dependencies came to.
public enum DependencyOutcome: Sendable, Equatable {
    /// Every dependency is healthy.
    case ready
    /// A dependency gave up (`failed`): this one cannot start.
    case failed(String)
    /// These were still not healthy at the deadline.
    case timedOut([String])
    /// The wait was called off (the service is being stopped).
    case cancelled
}
