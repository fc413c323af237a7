import CZstd

/// One-shot zstd for blobs, pack headers and index objects, with a compression and a decompression
/// context kept for reuse. Not thread-safe: one per writer, reader or verifier (or per call).
final class ZstdCodec {
    private let cctx: OpaquePointer
    private let dctx: OpaquePointer
    let level: Int32

    init(level: Int32 = 3) throws {
        guard let c = ZSTD_createCCtx() else { throw ChunkStoreError(.compression, "zstd: cannot create a compression context (out of memory?)") }
        guard let d = ZSTD_createDCtx() else {
            ZSTD_freeCCtx(c)
            throw ChunkStoreError(.compression, "zstd: cannot create a decompression context (out of memory?)")
        }
        cctx = c
        dctx = d
        self.level = level
    }

    deinit {
        ZSTD_freeCCtx(cctx)
        ZSTD_freeDCtx(dctx)
    }

    /// A zstd frame (content size recorded) of `input`.
    func compress(_ input: UnsafeRawBufferPointer) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { o in ZSTD_compressCCtx(cctx, o.baseAddress, bound, input.baseAddress, input.count, level) }
        if ZSTD_isError(n) != 0 { throw ChunkStoreError(.compression, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))") }
        out.removeSubrange(n...)
        return out
    }

    /// The most bytes a frame of `count` bytes of input can take.
    static func bound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Writes a zstd frame (content size recorded) of `input` into `output`, which must hold at least
    /// ``bound(_:)`` bytes; returns the frame's length.
    func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = ZSTD_compressCCtx(cctx, output.baseAddress, output.count, input.baseAddress, input.count, level)
        if ZSTD_isError(n) != 0 { throw ChunkStoreError(.compression, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))") }
        return n
    }

    /// Decompresses one frame; its content size must be at most `limit` (and exactly `expected` when given).
    func decompress(_ input: UnsafeRawBufferPointer, expected: Int? = nil, limit: Int = 256 << 20, what: @autoclosure () -> String) throws -> [UInt8] {
        let size = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        guard size != ZSTD_CONTENTSIZE_ERROR, size != ZSTD_CONTENTSIZE_UNKNOWN, size <= UInt64(limit) else {
            throw ChunkStoreError(.damaged, "\(what()): its zstd frame has no valid content size (damaged or not written by this library)")
        }
        if let expected, size != UInt64(expected) {
            throw ChunkStoreError(.damaged, "\(what()): its zstd frame holds \(size) bytes, the index says \(expected)")
        }
        let count = Int(size)
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { o in ZSTD_decompressDCtx(dctx, o.baseAddress, count, input.baseAddress, input.count) }
        if ZSTD_isError(n) != 0 || n != count {
            let reason = ZSTD_isError(n) != 0 ? String(cString: ZSTD_getErrorName(n)) : "\(n) of \(count) bytes"
            throw ChunkStoreError(.damaged, "\(what()): zstd decompression failed (\(reason))")
        }
        return out
    }
}
