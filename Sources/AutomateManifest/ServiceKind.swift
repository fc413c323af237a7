/// The role of a service in the stack (`[service] kind`); the supervisor and the deployment-service use it
/// for grouping and ordering decisions, dependencies are still given explicitly with `depends_on`.
public enum ServiceKind: String, Sendable, CaseIterable {
    /// Third-party infrastructure such as PostgreSQL or the search engine.
    case infrastructure
    /// The backup gateway (S3 API).
    case gateway
    /// A helper primitive (pg-sidecar, es-sidecar).
    case sidecar
    /// The deployment-service, which orchestrates backups and restores.
    case orchestrator
    /// A domain service. The default.
    case domain
}
