/// The cost of deriving a key-encryption key from a passphrase with scrypt: `n` (CPU/memory cost, a
/// power of two), `r` (block size), `p` (parallelism). Memory used is about `128 * n * r` bytes.
public struct ScryptParameters: Codable, Sendable, Equatable {
    /// CPU/memory cost: a power of two, at least 2.
    public var n: Int
    /// Block size.
    public var r: Int
    /// Parallelism.
    public var p: Int

    /// Checks the ranges (`n` a power of two in 2...2^22, `r` in 1...32, `p` in 1...16).
    public init(n: Int, r: Int, p: Int) throws {
        guard n >= 2, n <= 1 << 22, n & (n - 1) == 0, (1...32).contains(r), (1...16).contains(p) else {
            throw ChunkStoreError(.invalidArgument, "scrypt parameters N=\(n) r=\(r) p=\(p) are out of range: N a power of two up to 2^22, r 1...32, p 1...16")
        }
        self.n = n
        self.r = r
        self.p = p
    }

    private init(unchecked n: Int, _ r: Int, _ p: Int) {
        self.n = n
        self.r = r
        self.p = p
    }

    /// For real repositories: N=2^15, r=8, p=1 (32 MiB; about 0.12 s per derivation with an optimized
    /// scrypt on the build machine, about 0.5 s in a debug build, whose C code is unoptimized).
    public static let standard = ScryptParameters(unchecked: 1 << 15, 8, 1)
    /// For tests only: cheap and weak (N=2^10, r=8, p=1).
    public static let testing = ScryptParameters(unchecked: 1 << 10, 8, 1)
}
