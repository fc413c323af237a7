/// One chunk's bytes on its way from the ``ArtifactWriter`` (which fills it from the caller's buffers)
/// to its ``SealingQueue`` (which seals it and hands the buffer back for reuse): allocated once with
/// room for the maximum chunk, so no chunk costs an allocation or a second copy.
///
/// Owned by one thread at a time; the queue's lock hands it over.
final class ChunkBuffer: @unchecked Sendable {
    let capacity: Int
    private let base: UnsafeMutableRawPointer
    private(set) var count = 0
    /// The blob id, when the writer computed it.
    var id: BlobID?

    init(capacity: Int) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 64)
    }

    deinit { base.deallocate() }

    /// The bytes so far (valid until the buffer is changed).
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Appends `more`; the caller keeps `count + more.count <= capacity`.
    func append(_ more: UnsafeRawBufferPointer) {
        precondition(count + more.count <= capacity, "chunk buffer overflow: \(count) + \(more.count) > \(capacity)")
        guard let from = more.baseAddress, more.count > 0 else { return }
        (base + count).copyMemory(from: from, byteCount: more.count)
        count += more.count
    }

    /// Empties it for reuse.
    func reset() {
        count = 0
        id = nil
    }
}
