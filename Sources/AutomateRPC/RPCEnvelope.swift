import NIOCore

/// The wire envelope (`automate.rpc.Envelope` in Proto/rpc_envelope.proto), with a hand-written codec
/// that reads straight from a `ByteBuffer` (the payload stays a slice of the frame, never copied) and
/// writes a whole length-prefixed frame in one pass. It produces and accepts exactly the protobuf wire
/// format of the generated `Automate_Rpc_Envelope` (the tests check both ways).
struct RPCEnvelope: Sendable {
    var callID: UInt64 = 0
    var method: String = ""
    var payload: ByteBuffer = ByteBuffer()
    var statusCode: Int32 = 0
    var statusMessage: String = ""
    var endOfStream: Bool = false
    var cancel: Bool = false
    var timeoutMicros: UInt64 = 0

    /// Field tags: (field number << 3) | wire type.
    private enum Tag {
        static let callID: UInt8 = 0x08        // 1, varint
        static let method: UInt8 = 0x12        // 2, length-delimited
        static let payload: UInt8 = 0x1A       // 3, length-delimited
        static let statusCode: UInt8 = 0x20    // 4, varint
        static let statusMessage: UInt8 = 0x2A // 5, length-delimited
        static let endOfStream: UInt8 = 0x30   // 6, varint
        static let cancel: UInt8 = 0x38        // 7, varint
        static let timeoutMicros: UInt8 = 0x40 // 8, varint
    }
}

/// Why bytes are not a valid envelope.
struct RPCEnvelopeDecodingError: Error, CustomStringConvertible {
    var reason: String
    var description: String { "malformed envelope: \(reason)" }
}

// MARK: encoding

extension RPCEnvelope {
    /// Appends one frame (4-byte big-endian length, then the envelope) for these fields to `buffer`.
    /// Default values are omitted, as proto3 does.
    static func writeFrame(
        into buffer: inout ByteBuffer,
        callID: UInt64,
        method: String = "",
        payload: UnsafeRawBufferPointer? = nil,
        statusCode: Int32 = 0,
        statusMessage: String = "",
        endOfStream: Bool = false,
        cancel: Bool = false,
        timeoutMicros: UInt64 = 0
    ) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let start = buffer.writerIndex
        if callID != 0 {
            buffer.writeInteger(Tag.callID)
            buffer.writeVarint(callID)
        }
        if !method.isEmpty {
            buffer.writeInteger(Tag.method)
            buffer.writeVarint(UInt64(method.utf8.count))
            buffer.writeString(method)
        }
        if let payload, payload.count > 0 {
            buffer.writeInteger(Tag.payload)
            buffer.writeVarint(UInt64(payload.count))
            buffer.writeBytes(payload)
        }
        if statusCode != 0 {
            buffer.writeInteger(Tag.statusCode)
            // int32 is sign-extended to 64 bits on the wire.
            buffer.writeVarint(UInt64(bitPattern: Int64(statusCode)))
        }
        if !statusMessage.isEmpty {
            buffer.writeInteger(Tag.statusMessage)
            buffer.writeVarint(UInt64(statusMessage.utf8.count))
            buffer.writeString(statusMessage)
        }
        if endOfStream {
            buffer.writeInteger(Tag.endOfStream)
            buffer.writeInteger(UInt8(1))
        }
        if cancel {
            buffer.writeInteger(Tag.cancel)
            buffer.writeInteger(UInt8(1))
        }
        if timeoutMicros != 0 {
            buffer.writeInteger(Tag.timeoutMicros)
            buffer.writeVarint(timeoutMicros)
        }
        buffer.setInteger(UInt32(buffer.writerIndex - start), at: lengthIndex)
    }

    /// Appends a frame for a message payload given as bytes.
    static func writeFrame(
        into buffer: inout ByteBuffer,
        callID: UInt64,
        method: String = "",
        payloadBytes: [UInt8],
        statusCode: Int32 = 0,
        endOfStream: Bool = false,
        timeoutMicros: UInt64 = 0
    ) {
        payloadBytes.withUnsafeBytes { payload in
            writeFrame(
                into: &buffer, callID: callID, method: method, payload: payload, statusCode: statusCode,
                endOfStream: endOfStream, timeoutMicros: timeoutMicros)
        }
    }

    /// Appends this envelope as one frame.
    func write(into buffer: inout ByteBuffer) {
        payload.withUnsafeReadableBytes { payload in
            Self.writeFrame(
                into: &buffer, callID: callID, method: method, payload: payload, statusCode: statusCode,
                statusMessage: statusMessage, endOfStream: endOfStream, cancel: cancel,
                timeoutMicros: timeoutMicros)
        }
    }
}

// MARK: decoding

extension RPCEnvelope {
    /// Decodes the envelope that fills `buffer` (one frame without its length prefix). Unknown fields
    /// are skipped, as protobuf requires, so newer peers may add fields.
    init(decoding buffer: ByteBuffer) throws {
        var buffer = buffer
        self.init()
        while buffer.readableBytes > 0 {
            let key = try buffer.readVarintOrThrow()
            let fieldNumber = key >> 3
            let wireType = UInt8(truncatingIfNeeded: key & 7)
            switch (fieldNumber, wireType) {
            case (1, 0):
                callID = try buffer.readVarintOrThrow()
            case (2, 2):
                method = try buffer.readLengthDelimitedString(field: "method")
            case (3, 2):
                payload = try buffer.readLengthDelimited(field: "payload")
            case (4, 0):
                statusCode = Int32(truncatingIfNeeded: try buffer.readVarintOrThrow())
            case (5, 2):
                statusMessage = try buffer.readLengthDelimitedString(field: "status_message")
            case (6, 0):
                endOfStream = try buffer.readVarintOrThrow() != 0
            case (7, 0):
                cancel = try buffer.readVarintOrThrow() != 0
            case (8, 0):
                timeoutMicros = try buffer.readVarintOrThrow()
            default:
                guard fieldNumber != 0 else { throw RPCEnvelopeDecodingError(reason: "field number 0") }
                try buffer.skipField(wireType: wireType)
            }
        }
    }
}

extension ByteBuffer {
    @inline(__always)
    mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        writeInteger(UInt8(truncatingIfNeeded: value))
    }

    @inline(__always)
    mutating func readVarintOrThrow() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while shift < 64 {
            guard let byte = readInteger(as: UInt8.self) else {
                throw RPCEnvelopeDecodingError(reason: "truncated varint")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw RPCEnvelopeDecodingError(reason: "varint longer than 10 bytes")
    }

    mutating func readLengthDelimited(field: String) throws -> ByteBuffer {
        let length = try readVarintOrThrow()
        guard length <= UInt64(readableBytes), let slice = readSlice(length: Int(length)) else {
            throw RPCEnvelopeDecodingError(reason: "\(field) length \(length) runs past the frame")
        }
        return slice
    }

    mutating func readLengthDelimitedString(field: String) throws -> String {
        let slice = try readLengthDelimited(field: field)
        // Invalid UTF-8 is repaired (U+FFFD), not rejected: the strings are names and messages.
        return slice.withUnsafeReadableBytes { String(decoding: $0, as: UTF8.self) }
    }

    mutating func skipField(wireType: UInt8) throws {
        switch wireType {
        case 0:
            _ = try readVarintOrThrow()
        case 1:
            guard readableBytes >= 8 else { throw RPCEnvelopeDecodingError(reason: "truncated fixed64") }
            moveReaderIndex(forwardBy: 8)
        case 2:
            _ = try readLengthDelimited(field: "unknown field")
        case 5:
            guard readableBytes >= 4 else { throw RPCEnvelopeDecodingError(reason: "truncated fixed32") }
            moveReaderIndex(forwardBy: 4)
        default:
            throw RPCEnvelopeDecodingError(reason: "unsupported wire type \(wireType)")
        }
    }
}
