/// The sizes FastCDC cuts at: a chunk is at least `minimum` bytes (except an artifact's last), at most
/// `maximum`, and `average` on average (a power of two; normalized chunking keeps most chunks near it).
///
/// They are recorded in the repository's `config` object: chunks written with other parameters are
/// cut elsewhere and dedup against them stops working (nothing breaks, nothing is shared).
public struct ChunkerParameters: Codable, Sendable, Equatable {
    /// The smallest chunk (the cut-point search starts after it).
    public var minimum: Int
    /// The target average: a power of two.
    public var average: Int
    /// The largest chunk: a cut is forced here.
    public var maximum: Int

    /// Checks the sizes: `64 <= minimum < average < maximum <= 64 MiB`, `average` a power of two.
    public init(minimum: Int, average: Int, maximum: Int) throws {
        guard minimum >= 64, minimum < average, average < maximum, maximum <= 64 << 20, average & (average - 1) == 0 else {
            throw ChunkStoreError(
                .invalidArgument,
                "chunker sizes minimum \(minimum), average \(average), maximum \(maximum) are invalid: "
                    + "give 64 <= minimum < average < maximum <= 64 MiB with average a power of two")
        }
        self.minimum = minimum
        self.average = average
        self.maximum = maximum
    }

    private init(unchecked minimum: Int, _ average: Int, _ maximum: Int) {
        self.minimum = minimum
        self.average = average
        self.maximum = maximum
    }

    /// The production sizes: 256 KiB, 1 MiB, 4 MiB.
    public static let standard = ChunkerParameters(unchecked: 256 << 10, 1 << 20, 4 << 20)
}
