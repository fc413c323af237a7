import Crypto
import Foundation
import _CryptoExtras

/// One key file, `keys/<key id>`: the master key sealed with a key-encryption key derived from a
/// passphrase. Several key files may wrap the same master key (one per person or machine); the key id
/// is the SHA-256 of the file's bytes.
///
/// JSON, for example:
///
///     {"version":1,"label":"ops laptop","created":"2026-05-01T10:00:00Z","kdf":"scrypt",
///      "n":32768,"r":8,"p":1,"salt":"<base64, 32 bytes>","nonce":"<base64, 12 bytes>",
///      "sealed":"<base64: AES-256-GCM ciphertext of the 64-byte master key, then the 16-byte tag>"}
public struct KeyFile: Codable, Sendable {
    /// The key file format: 1.
    public var version: Int
    /// A short label (who or what uses this key).
    public var label: String
    /// When the key was added (ISO 8601).
    public var created: String
    /// The key derivation function: "scrypt".
    public var kdf: String
    /// scrypt's N, r, p.
    public var n: Int
    public var r: Int
    public var p: Int
    /// scrypt's salt (base64 in JSON).
    public var salt: Data
    /// The AES-GCM nonce (base64 in JSON).
    public var nonce: Data
    /// The ciphertext of the 64-byte master key then the 16-byte tag (base64 in JSON); associated data
    /// "automate-chunkstore master-key v1".
    public var sealed: Data

    /// Wraps `master` with a key derived from `passphrase`.
    static func make(master: MasterKey, passphrase: String, label: String, kdf params: ScryptParameters) throws -> KeyFile {
        let salt = Data((0..<32).map { _ in UInt8.random(in: 0...255) })
        let kek = try deriveKEK(passphrase: passphrase, salt: salt, params: params)
        let box: AES.GCM.SealedBox
        do {
            box = try AES.GCM.seal(master.serialized, using: kek, nonce: AES.GCM.Nonce(), authenticating: Envelope.Kind.masterKey.associatedData)
        } catch {
            throw ChunkStoreError(.crypto, "sealing the master key failed: \(error)")
        }
        return KeyFile(
            version: 1, label: label, created: ISO8601DateFormatter().string(from: Date()), kdf: "scrypt", n: params.n, r: params.r, p: params.p,
            salt: salt, nonce: Data(box.nonce), sealed: box.ciphertext + box.tag)
    }

    /// The master key if `passphrase` opens this file; nil if it does not.
    func open(passphrase: String, name: String) throws -> MasterKey? {
        guard version == 1, kdf == "scrypt" else {
            throw ChunkStoreError(.unsupportedFormat, "key file \(name) is version \(version) with kdf \(kdf); this build reads version 1 with scrypt: upgrade")
        }
        let params = try ScryptParameters(n: n, r: r, p: p)
        let kek = try deriveKEK(passphrase: passphrase, salt: salt, params: params)
        guard sealed.count == 64 + 16, let nonce = try? AES.GCM.Nonce(data: nonce),
            let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: sealed.prefix(64), tag: sealed.suffix(16)),
            let plain = try? AES.GCM.open(box, using: kek, authenticating: Envelope.Kind.masterKey.associatedData)
        else { return nil }
        return MasterKey(serialized: Array(plain))
    }

    /// The file's bytes (sorted-key JSON).
    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }

    /// Parses a key file's bytes; `name` is its object key, for messages.
    static func decode(_ bytes: [UInt8], name: String) throws -> KeyFile {
        do {
            return try JSONDecoder().decode(KeyFile.self, from: Data(bytes))
        } catch {
            throw ChunkStoreError(.damaged, "key file \(name) is not a valid key file (\(error)); remove it if it is stray, or restore it from a copy")
        }
    }

    private func deriveKEK(passphrase: String, salt: Data, params: ScryptParameters) throws -> SymmetricKey {
        try Self.deriveKEK(passphrase: passphrase, salt: salt, params: params)
    }

    private static func deriveKEK(passphrase: String, salt: Data, params: ScryptParameters) throws -> SymmetricKey {
        do {
            return try KDF.Scrypt.deriveKey(
                from: Array(passphrase.utf8), salt: salt, outputByteCount: 32, rounds: params.n, blockSize: params.r, parallelism: params.p)
        } catch {
            throw ChunkStoreError(.crypto, "scrypt (N=\(params.n) r=\(params.r) p=\(params.p)) failed: \(error); is there enough memory?")
        }
    }
}

/// What ``Repository/listKeys()`` shows of a key file (never the key).
public struct KeyInfo: Sendable, Equatable {
    /// The key id (the file's name under `keys/`).
    public var id: String
    /// Its label.
    public var label: String
    /// When it was added (ISO 8601).
    public var created: String
}
