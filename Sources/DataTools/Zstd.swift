// Streaming zstd (libzstd) for dumps and archives: compress on the way to S3, decompress on the way back.
import CZstd

/// Streaming zstd compression (ZSTD_compressStream2): feed chunks, get compressed chunks pushed to `output`.
public final class ZstdCompressor {
    private let cctx: OpaquePointer
    private var out: [UInt8]
    private let output: (UnsafeRawBufferPointer) throws -> Void

    public init(level: Int32, output: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let c = ZSTD_createCCtx() else { throw DataToolsError(.compression, "zstd: cannot create a compression context") }
        cctx = c
        let r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)
        if ZSTD_isError(r) != 0 { ZSTD_freeCCtx(c); throw DataToolsError(.compression, "zstd: \(String(cString: ZSTD_getErrorName(r)))") }
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)
        out = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
        self.output = output
    }

    deinit { ZSTD_freeCCtx(cctx) }

    public func compress(_ input: UnsafeRawBufferPointer) throws {
        try run(input, ZSTD_e_continue)
    }

    /// Ends the frame (flushes everything).
    public func finish() throws {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_end)
    }

    private func run(_ input: UnsafeRawBufferPointer, _ mode: ZSTD_EndDirective) throws {
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        let outCount = out.count
        while true {
            var produced = 0
            var remaining = 0
            try out.withUnsafeMutableBytes { o in
                var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: outCount, pos: 0)
                let r = ZSTD_compressStream2(cctx, &outBuf, &inBuf, mode)
                if ZSTD_isError(r) != 0 { throw DataToolsError(.compression, "zstd: \(String(cString: ZSTD_getErrorName(r)))") }
                produced = outBuf.pos
                remaining = r
                if produced > 0 { try output(UnsafeRawBufferPointer(start: o.baseAddress, count: produced)) }
            }
            if mode == ZSTD_e_end {
                if remaining == 0 { return }
            } else if inBuf.pos == inBuf.size {
                return
            }
        }
    }
}

/// Streaming zstd decompression; `finish` throws when the input ended inside a frame (truncated object).
public final class ZstdDecompressor {
    private let dctx: OpaquePointer
    private var out: [UInt8]
    private let output: (UnsafeRawBufferPointer) throws -> Void
    private var lastHint: Int = 0
    private var sawInput = false

    public init(output: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let d = ZSTD_createDCtx() else { throw DataToolsError(.compression, "zstd: cannot create a decompression context") }
        dctx = d
        out = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        self.output = output
    }

    deinit { ZSTD_freeDCtx(dctx) }

    public func decompress(_ input: UnsafeRawBufferPointer) throws {
        guard input.count > 0 else { return }
        sawInput = true
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        let outCount = out.count
        while true {
            var full = false
            try out.withUnsafeMutableBytes { o in
                var outBuf = ZSTD_outBuffer(dst: o.baseAddress, size: outCount, pos: 0)
                let r = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                if ZSTD_isError(r) != 0 { throw DataToolsError(.compression, "zstd: \(String(cString: ZSTD_getErrorName(r)))") }
                lastHint = r
                full = outBuf.pos == outCount
                if outBuf.pos > 0 { try output(UnsafeRawBufferPointer(start: o.baseAddress, count: outBuf.pos)) }
            }
            // A frame that ended exactly as the output filled is done: calling again would start reading
            // the next frame's header (and leave a hint that looks like a truncated frame).
            if inBuf.pos == inBuf.size && (!full || lastHint == 0) { return }
        }
    }

    public func finish() throws {
        if !sawInput { throw DataToolsError(.compression, "zstd: empty input") }
        if lastHint != 0 { throw DataToolsError(.compression, "zstd: input ends inside a frame (truncated)") }
    }
}
