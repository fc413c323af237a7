import Crypto
import Foundation

/// A repository's master key: a 32-byte AES-256-GCM key that seals every blob, pack header and index
/// object, and a 32-byte HMAC-SHA256 key that names blobs. Made once, at random, when the repository is
/// initialized; stored only wrapped by passphrase-derived keys in `keys/` (see ``KeyFile``).
public struct MasterKey: Sendable {
    // Kept as bytes (SymmetricKey is not Sendable in every swift-crypto release).
    private let bytes: [UInt8]

    /// Seals and opens (AES-256-GCM).
    public var encryptionKey: SymmetricKey { SymmetricKey(data: bytes[0..<32]) }
    /// Names blobs (HMAC-SHA256 of their plaintext).
    public var idKey: SymmetricKey { SymmetricKey(data: bytes[32..<64]) }

    /// A fresh random master key.
    public static func random() -> MasterKey {
        let a = SymmetricKey(size: .bits256), b = SymmetricKey(size: .bits256)
        return MasterKey(serialized: a.withUnsafeBytes { Array($0) } + b.withUnsafeBytes { Array($0) })!
    }

    /// From its 64-byte serialization (encryption key, then id key).
    init?(serialized: [UInt8]) {
        guard serialized.count == 64 else { return nil }
        bytes = serialized
    }

    /// 64 bytes: the encryption key, then the id key.
    var serialized: [UInt8] { bytes }

    /// The id of a blob with this plaintext: HMAC-SHA256(id key, plaintext).
    public func blobID(of plaintext: UnsafeRawBufferPointer) -> BlobID {
        BlobID(bytes: HMAC<SHA256>.authenticationCode(for: plaintext, using: idKey))!
    }

    /// The id of a blob with this plaintext.
    public func blobID(of plaintext: [UInt8]) -> BlobID {
        plaintext.withUnsafeBytes { blobID(of: $0) }
    }

    /// Authenticates artifact records: HKDF-SHA256 of the id key (no salt, info
    /// `"automate-chunkstore artifact digest v1"`), so that no blob id can ever equal a record digest.
    var digestKey: SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: idKey, info: Array("automate-chunkstore artifact digest v1".utf8), outputByteCount: 32)
    }

    /// An artifact record's digest: HMAC-SHA256(digest key, `"automate-chunkstore artifact v1"` ||
    /// size (u64 LE) || blob count (u32 LE) || per blob: id (32 bytes) || plaintext size (u32 LE)).
    /// It binds the blob list, in order, and the total size: a record changed by anyone without the key
    /// (a blob dropped, swapped or added, a size changed) no longer matches.
    public func artifactDigest(size: Int64, blobs: [ArtifactRecord.Blob]) -> BlobID {
        var w = ByteWriter()
        w.raw(Array("automate-chunkstore artifact v1".utf8))
        w.u64(UInt64(bitPattern: size))
        w.u32(UInt32(truncatingIfNeeded: blobs.count))
        for b in blobs {
            w.id(b.id)
            w.u32(UInt32(truncatingIfNeeded: b.size))
        }
        return BlobID(bytes: HMAC<SHA256>.authenticationCode(for: w.bytes, using: digestKey))!
    }
}
