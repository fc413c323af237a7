import Crypto

/// One blob's entry in a pack header.
struct PackEntry: Sendable, Equatable {
    var id: BlobID
    var offset: Int
    var length: Int
    var plaintextLength: Int
}

/// A pack object, `data/<first two hex digits>/<pack id>`:
///
///     sealed blob 1 || sealed blob 2 || ... || sealed header || trailer
///
/// The header (sealed, kind pack-header) is version 1 (u8), a blob count (u32 LE) and per blob: id (32),
/// offset (u32 LE), sealed length (u32 LE), plaintext length (u32 LE). The trailer is 8 bytes: the
/// sealed header's length (u32 LE), then "ACP1". The pack id is SHA-256 of all of the pack's bytes.
enum Pack {
    static let trailerLength = 8
    static let magic: [UInt8] = Array("ACP1".utf8)

    /// The object key of a pack.
    static func key(_ id: PackID) -> String {
        let hex = id.hex
        return "data/\(hex.prefix(2))/\(hex)"
    }

    /// The pack id a pack key names, or nil.
    static func id(fromKey key: String) -> PackID? {
        guard key.hasPrefix("data/"), let last = key.split(separator: "/").last else { return nil }
        return PackID(hex: String(last))
    }

    /// Appends the sealed header and trailer to `blobs` (the concatenated sealed blobs). Returns the id.
    static func finish(_ pack: inout [UInt8], entries: [PackEntry], key: SymmetricKey, codec: ZstdCodec) throws -> PackID {
        var w = ByteWriter()
        w.u8(1)
        w.u32(UInt32(entries.count))
        for e in entries {
            w.id(e.id)
            w.u32(UInt32(e.offset))
            w.u32(UInt32(e.length))
            w.u32(UInt32(e.plaintextLength))
        }
        let header = try w.bytes.withUnsafeBytes { try Envelope.seal($0, kind: .packHeader, key: key, codec: codec) }
        pack += header
        var t = ByteWriter()
        t.u32(UInt32(header.count))
        t.raw(magic)
        pack += t.bytes
        return PackID(bytes: SHA256.hash(data: pack))!
    }

    /// Checks that `bytes` hash to `id` (throws naming the pack if not).
    static func checkID(_ bytes: [UInt8], id: PackID) throws {
        let actual = PackID(bytes: SHA256.hash(data: bytes))!
        guard actual == id else {
            throw ChunkStoreError(
                .damaged,
                "pack \(key(id)) is damaged: its SHA-256 is \(actual.hex), not its name (\(bytes.count) bytes); restore it from another copy of the repository")
        }
    }

    /// The entries of a pack's header (after its id was checked).
    static func entries(of bytes: [UInt8], id: PackID, key: SymmetricKey, codec: ZstdCodec) throws -> [PackEntry] {
        let name = "pack \(Pack.key(id))"
        guard bytes.count >= trailerLength, Array(bytes.suffix(4)) == magic else {
            throw ChunkStoreError(.damaged, "\(name) does not end with ACP1: not a pack, or truncated")
        }
        var tr = ByteReader(Array(bytes.suffix(trailerLength)), what: "\(name) trailer")
        let headerLength = Int(try tr.u32())
        guard headerLength <= bytes.count - trailerLength else { throw ChunkStoreError(.damaged, "\(name): its trailer names a header longer than the pack") }
        let headerStart = bytes.count - trailerLength - headerLength
        let plain = try bytes.withUnsafeBytes {
            try Envelope.open(UnsafeRawBufferPointer(rebasing: $0[headerStart..<headerStart + headerLength]), kind: .packHeader, key: key, codec: codec, what: "\(name) header")
        }
        var r = ByteReader(plain, what: "\(name) header")
        let version = try r.u8()
        guard version == 1 else { throw ChunkStoreError(.unsupportedFormat, "\(name) header is version \(version); this build reads 1: upgrade") }
        let count = try r.u32()
        var entries: [PackEntry] = []
        for _ in 0..<count {
            let id = try r.id()
            let offset = Int(try r.u32()), length = Int(try r.u32()), plainLength = Int(try r.u32())
            guard offset + length <= headerStart else { throw ChunkStoreError(.damaged, "\(name) header lists blob \(id.short) beyond the blobs' area") }
            entries.append(PackEntry(id: id, offset: offset, length: length, plaintextLength: plainLength))
        }
        return entries
    }
}
