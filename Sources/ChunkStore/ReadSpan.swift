/// A run of an artifact's chunks that lie close together in one pack, fetched with one ranged read.
/// ``ChunkedReader`` plans an artifact as spans, so a restore reads only the blobs it needs (never a
/// whole pack for one blob) and neighbouring blobs in one request.
struct ReadSpan: Sendable {
    /// One chunk in the span.
    struct Item: Sendable {
        /// Its position in the artifact.
        var position: Int
        var id: BlobID
        /// Where it is in the pack.
        var location: BlobLocation
        /// Its plaintext size as the record says.
        var size: Int
    }

    var pack: PackID
    /// The span's bytes in the pack.
    var range: Range<Int>
    /// Its chunks, in the artifact's order.
    var items: [Item]
    /// Their plaintext bytes.
    var plaintextBytes: Int

    /// Spans read at most this many bytes of a pack, and hold at most this much plaintext (beyond one chunk).
    static let maximumBytes = 8 << 20
    /// Blobs of a pack at most this far apart are read in one span (the bytes between are read and skipped).
    static let maximumGap = 256 << 10

    /// `record`'s chunks as spans, in order. Throws naming the first chunk in no index.
    static func plan(_ record: ArtifactRecord, index: RepositoryIndex, location: String) throws -> [ReadSpan] {
        var spans: [ReadSpan] = []
        for (n, blob) in record.blobs.enumerated() {
            guard let loc = index.location(of: blob.id) else {
                throw ChunkStoreError(
                    .damaged, "blob \(blob.id.hex) (chunk \(n) of artifact \(record.name)) is in no index of \(location): its pack was never committed or an index object is lost")
            }
            let item = Item(position: n, id: blob.id, location: loc, size: blob.size)
            let end = loc.offset + loc.length
            if var last = spans.last, last.pack == loc.pack, loc.offset >= last.range.lowerBound, loc.offset <= last.range.upperBound + maximumGap,
               max(end, last.range.upperBound) - last.range.lowerBound <= maximumBytes, last.plaintextBytes + blob.size <= maximumBytes {
                last.range = last.range.lowerBound..<max(end, last.range.upperBound)
                last.items.append(item)
                last.plaintextBytes += blob.size
                spans[spans.count - 1] = last
            } else {
                spans.append(ReadSpan(pack: loc.pack, range: loc.offset..<end, items: [item], plaintextBytes: blob.size))
            }
        }
        return spans
    }
}
