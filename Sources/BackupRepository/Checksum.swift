import Crypto
import Foundation

/// The one spelling of a sha256 in repositories and records: lower-case hex.
public enum Checksum {
    /// Lower-case hex of a digest.
    public static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    /// sha256 of bytes, lower-case hex.
    public static func sha256(_ bytes: some DataProtocol) -> String { hex(SHA256.hash(data: bytes)) }
}
