@testable import AutomateRPC
import NIOCore
import SwiftProtobuf
import Testing

@Suite struct EnvelopeCodecTests {
    @Test func handCodecMatchesGeneratedCode() throws {
        var generated = Automate_Rpc_Envelope()
        generated.callID = 300
        generated.method = "svc/Method"
        generated.payload = .init([1, 2, 3, 0xFF])
        generated.statusCode = 13
        generated.statusMessage = "boom ü"
        generated.endOfStream = true
        generated.cancel = true
        generated.timeoutMicros = 1_500_000

        // generated -> hand decoder
        let bytes: [UInt8] = try generated.serializedBytes()
        let decoded = try RPCEnvelope(decoding: ByteBuffer(bytes: bytes))
        #expect(decoded.callID == 300)
        #expect(decoded.method == "svc/Method")
        #expect(Array(decoded.payload.readableBytesView) == [1, 2, 3, 0xFF])
        #expect(decoded.statusCode == 13)
        #expect(decoded.statusMessage == "boom ü")
        #expect(decoded.endOfStream && decoded.cancel)
        #expect(decoded.timeoutMicros == 1_500_000)

        // hand encoder -> generated
        var frame = ByteBuffer()
        decoded.write(into: &frame)
        let length = frame.readInteger(as: UInt32.self)!
        #expect(Int(length) == frame.readableBytes)
        let back = try Automate_Rpc_Envelope(serializedBytes: Array(frame.readableBytesView))
        #expect(back == generated)
    }

    @Test func negativeStatusAndUnknownFieldsRoundTrip() throws {
        var generated = Automate_Rpc_Envelope()
        generated.statusCode = -5
        var bytes: [UInt8] = try generated.serializedBytes()
        bytes += [0x48, 0x01, 0x52, 0x02, 0x61, 0x62, 0x5D, 1, 2, 3, 4, 0x59, 1, 2, 3, 4, 5, 6, 7, 8]  // unknown 9..11
        let decoded = try RPCEnvelope(decoding: ByteBuffer(bytes: bytes))
        #expect(decoded.statusCode == -5)
    }

    @Test func garbageIsRejected() {
        #expect(throws: RPCEnvelopeDecodingError.self) {
            try RPCEnvelope(decoding: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF]))
        }
        #expect(throws: RPCEnvelopeDecodingError.self) {
            try RPCEnvelope(decoding: ByteBuffer(bytes: [0x1A, 0x10, 0x01]))  // payload runs past the end
        }
        #expect(throws: RPCEnvelopeDecodingError.self) {
            try RPCEnvelope(decoding: ByteBuffer(bytes: [0x0B]))  // group wire type
        }
    }

    @Test func framingAcrossPartialReads() throws {
        // Three frames fed one byte at a time: each completes exactly on its last byte.
        var stream = ByteBuffer()
        for id in 1...3 {
            RPCEnvelope.writeFrame(into: &stream, callID: UInt64(id), method: "m\(id)", payloadBytes: Array(repeating: UInt8(id), count: 200 * id))
        }
        let bytes = Array(stream.readableBytesView)
        var buffer = ByteBuffer()
        var seen: [UInt64] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let frame = try RPCFrameDecoder.readFrame(from: &buffer, maxFrameSize: 1 << 20) {
                let envelope = try RPCEnvelope(decoding: frame)
                #expect(envelope.payload.readableBytes == 200 * Int(envelope.callID))
                #expect(envelope.method == "m\(envelope.callID)")
                seen.append(envelope.callID)
            }
        }
        #expect(seen == [1, 2, 3])
        #expect(buffer.readableBytes == 0)
    }

    @Test func oversizedLengthIsRejectedBeforeTheBody() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1025))
        #expect(throws: RPCFrameTooLargeError.self) {
            _ = try RPCFrameDecoder.readFrame(from: &buffer, maxFrameSize: 1024)
        }
    }
}
