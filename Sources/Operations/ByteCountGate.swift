/// Decides when a growing byte count is worth reporting: once it moved `step` bytes past the last count
/// reported. Blocking work reads in chunks of kilobytes; reporting each one would cost more than the
/// watchers gain (the registry coalesces what it publishes, but every report still crosses its inbox).
public struct ByteCountGate: Sendable {
    /// How far the count moves between two reports: 1 MiB unless told.
    public let step: Int64
    private var reported: Int64 = 0

    public init(step: Int64 = 1 << 20) { self.step = step }

    /// Whether `count` should be reported now (and, if so, remembers it as reported).
    public mutating func passes(_ count: Int64) -> Bool {
        guard count - reported >= step else { return false }
        reported = count
        return true
    }
}
