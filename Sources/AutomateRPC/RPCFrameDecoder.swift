import NIOCore

/// Splits the inbound byte stream into length-prefixed frames and decodes each as an `RPCEnvelope`.
///
/// A length above `maxFrameSize` or a frame that is not a valid envelope throws, which makes the
/// connection handler count and log the error and close that connection. When it holds part of a frame,
/// and when that frame completes, it fires an `RPCFramingEvent` so the handler can time it out.
struct RPCFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = RPCEnvelope

    let maxFrameSize: Int
    /// True while the buffer holds the start of a frame that has not fully arrived.
    private var holdingPartialFrame = false

    init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.readFrame(from: &buffer, maxFrameSize: maxFrameSize) else {
            // Only called with bytes to read, so these are the first bytes of an incomplete frame.
            if !holdingPartialFrame {
                holdingPartialFrame = true
                context.fireUserInboundEventTriggered(RPCFramingEvent.partialFrameStarted)
            }
            Self.makeRoom(in: &buffer)
            return .needMoreData
        }
        if holdingPartialFrame {
            holdingPartialFrame = false
            context.fireUserInboundEventTriggered(RPCFramingEvent.partialFrameCompleted)
        }
        context.fireChannelRead(wrapInboundOut(try RPCEnvelope(decoding: frame)))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// Frames from this size on get their whole length reserved when they start to arrive.
    static let reserveFrom = 1 << 20

    /// Reserves room for the whole of a large frame once its length is known: grown by doubling as 64 KiB
    /// reads arrive, the buffer of a 16 MiB frame (a WAL segment) would be copied and faulted in about
    /// four times over. The length has passed the `maxFrameSize` check (`readFrame`).
    static func makeRoom(in buffer: inout ByteBuffer) {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), Int(length) >= reserveFrom else { return }
        buffer.reserveCapacity(minimumWritableBytes: 4 + Int(length) - buffer.readableBytes)
    }

    /// Takes one whole frame (without its length prefix) off the front of `buffer`, or returns nil
    /// and leaves `buffer` untouched if the frame is not complete yet.
    static func readFrame(from buffer: inout ByteBuffer, maxFrameSize: Int) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard UInt64(length) <= UInt64(maxFrameSize) else {
            throw RPCFrameTooLargeError(length: Int(length), maxFrameSize: maxFrameSize)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(length))
    }
}

/// A peer announced a frame longer than the configured maximum.
struct RPCFrameTooLargeError: Error, CustomStringConvertible {
    var length: Int
    var maxFrameSize: Int
    var description: String {
        "frame of \(length) bytes exceeds the maximum frame size of \(maxFrameSize) bytes; raise maxFrameSize on both ends if such messages are expected"
    }
}
