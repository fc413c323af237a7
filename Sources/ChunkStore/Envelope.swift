import Crypto
import Foundation

/// The sealed form every encrypted structure shares (blobs, pack headers, index objects, wrapped keys):
///
///     nonce (12 bytes, random) || AES-256-GCM ciphertext of (flag (1 byte) || body) || tag (16 bytes)
///
/// `flag` 0: `body` is the plaintext; 1: `body` is a zstd frame of it (used only when smaller). The
/// associated data binds the structure's kind and, for a blob, its id, so nothing sealed for one role
/// or one name opens as another.
enum Envelope {
    /// Bytes a sealed structure adds to its (compressed) body.
    static let overhead = 12 + 1 + 16

    /// What a sealed structure is; its associated data.
    enum Kind {
        case blob(BlobID)
        case packHeader
        case index
        case masterKey

        var associatedData: [UInt8] {
            switch self {
            case .blob(let id): return Array("automate-chunkstore blob v1".utf8) + id.bytes
            case .packHeader: return Array("automate-chunkstore pack-header v1".utf8)
            case .index: return Array("automate-chunkstore index v1".utf8)
            case .masterKey: return Array("automate-chunkstore master-key v1".utf8)
            }
        }
    }

    /// Seals `plaintext`, zstd-compressed first when `codec` is given and that makes it smaller.
    static func seal(_ plaintext: UnsafeRawBufferPointer, kind: Kind, key: SymmetricKey, codec: ZstdCodec?) throws -> [UInt8] {
        var scratch: [UInt8] = []
        return Array(try seal(plaintext, kind: kind, key: key, codec: codec, scratch: &scratch))
    }

    /// Seals `plaintext` (see ``seal(_:kind:key:codec:)``) into its combined form (nonce, ciphertext,
    /// tag), assembling the flag and the body in `scratch`, which grows as needed: a caller sealing many
    /// blobs keeps one scratch so that no blob costs an allocation or a copy before encryption.
    static func seal(
        _ plaintext: UnsafeRawBufferPointer, kind: Kind, key: SymmetricKey, codec: ZstdCodec?, scratch: inout [UInt8]
    ) throws -> Data {
        let room = 1 + (codec == nil ? plaintext.count : max(plaintext.count, ZstdCodec.bound(plaintext.count)))
        if scratch.count < room { scratch = [UInt8](repeating: 0, count: room) }
        let length = try scratch.withUnsafeMutableBytes { inner -> Int in
            if let codec, plaintext.count > 0 {
                let n = try codec.compress(plaintext, into: UnsafeMutableRawBufferPointer(rebasing: inner[1...]))
                if n < plaintext.count {
                    inner[0] = 1
                    return 1 + n
                }
            }
            inner[0] = 0
            if plaintext.count > 0 { UnsafeMutableRawBufferPointer(rebasing: inner[1...]).copyMemory(from: plaintext) }
            return 1 + plaintext.count
        }
        do {
            let box = try scratch.withUnsafeBytes { inner in
                try AES.GCM.seal(UnsafeRawBufferPointer(rebasing: inner[0..<length]), using: key, nonce: AES.GCM.Nonce(), authenticating: kind.associatedData)
            }
            guard let combined = box.combined else { throw ChunkStoreError(.crypto, "AES-GCM gave no combined form (nonce size not 12?)") }
            return combined
        } catch let e as ChunkStoreError {
            throw e
        } catch {
            throw ChunkStoreError(.crypto, "AES-256-GCM sealing failed: \(error)")
        }
    }

    /// Opens what ``seal(_:kind:key:codec:)`` made: checks the tag (with the kind's associated data),
    /// then decompresses. `expected` is the plaintext length when known. `what` names it in errors.
    static func open(
        _ sealed: UnsafeRawBufferPointer, kind: Kind, key: SymmetricKey, codec: ZstdCodec, expected: Int? = nil, what: @autoclosure () -> String
    ) throws -> [UInt8] {
        guard sealed.count >= overhead else {
            throw ChunkStoreError(.damaged, "\(what()) is \(sealed.count) bytes, shorter than any sealed structure (\(overhead)): truncated")
        }
        let inner: Data
        do {
            let box = try AES.GCM.SealedBox(combined: Data(sealed))
            inner = try AES.GCM.open(box, using: key, authenticating: kind.associatedData)
        } catch {
            throw ChunkStoreError(
                .damaged, "\(what()) fails authentication (AES-GCM tag mismatch): its bytes were changed, or it was sealed with another key or for another name")
        }
        return try inner.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [UInt8] in
            let body = UnsafeRawBufferPointer(rebasing: raw[1...])
            switch raw[0] {
            case 0:
                if let expected, body.count != expected {
                    throw ChunkStoreError(.damaged, "\(what()) holds \(body.count) bytes, the index says \(expected)")
                }
                return Array(body)
            case 1:
                return try codec.decompress(body, expected: expected, what: what())
            default:
                throw ChunkStoreError(.unsupportedFormat, "\(what()) has compression flag \(raw[0]); this build knows 0 (none) and 1 (zstd): upgrade")
            }
        }
    }
}
