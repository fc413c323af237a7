import CAutomateShims
import Crypto
import Foundation
import NIOCore
import S3Client

/// A running checksum of one of S3's `x-amz-checksum-*` algorithms.
struct RunningChecksum {
    enum Algorithm: String { case crc32, crc32c, sha1, sha256 }
    let algorithm: Algorithm
    private var crc: UInt32 = 0
    private var sha1 = Insecure.SHA1()
    private var sha256 = SHA256()

    init?(name: String) {
        guard let a = Algorithm(rawValue: name.lowercased()) else { return nil }
        algorithm = a
    }

    mutating func update(_ p: UnsafeRawBufferPointer) {
        guard p.count > 0 else { return }
        switch algorithm {
        case .crc32: crc = automate_crc32(crc, p.baseAddress, p.count)
        case .crc32c: crc = automate_crc32c(crc, p.baseAddress, p.count)
        case .sha1: sha1.update(bufferPointer: p)
        case .sha256: sha256.update(bufferPointer: p)
        }
    }

    func finalizeBase64() -> String {
        switch algorithm {
        case .crc32, .crc32c:
            let v = crc.bigEndian
            return withUnsafeBytes(of: v) { Data($0).base64EncodedString() }
        case .sha1: return Data(sha1.finalize()).base64EncodedString()
        case .sha256: return Data(sha256.finalize()).base64EncodedString()
        }
    }
}

/// How the request body is protected, decided by SigV4 verification.
enum PayloadMode: Sendable {
    /// No body hash to check (UNSIGNED-PAYLOAD, presigned URL).
    case unsigned
    /// Hex SHA-256 of the whole body, checked at the end.
    case signedHex(String)
    /// aws-chunked with a per-chunk signature chain.
    case streamingSigned(seed: String, key: [UInt8], amzDate: String, signer: SigV4Signer, trailer: Bool)
    /// aws-chunked without signatures, checksum in the trailer.
    case streamingUnsignedTrailer
}

/// Turns the wire body into payload bytes while checking everything the request promised about it:
/// the signed SHA-256, the aws-chunked framing and chunk signatures, the trailing or header checksum,
/// Content-MD5 and the declared length. `finish()` throws the S3 error if any check fails.
final class PayloadDecoder {
    let mode: PayloadMode
    private(set) var md5 = Insecure.MD5()
    private var sha256: SHA256?
    private var checksum: RunningChecksum?
    private var expectedChecksum: String?
    private var checksumHeaderName: String?
    private let contentMD5: [UInt8]?
    private let expectedLength: Int?
    private(set) var decodedBytes = 0
    private var chunked: Bool

    // aws-chunked state
    private enum State { case header, data(Int), dataCR, dataLF, trailer, done }
    private var state: State = .header
    private var line: [UInt8] = []
    private var chunkSignature: String?
    private var chunkHash: SHA256?
    private var previousSignature: String = ""
    private var trailerLines: [String] = []
    private var sawFinalChunk = false

    /// - Parameters:
    ///   - headers: lowercased request headers.
    /// `hashMD5: false` when the sink computes the MD5 itself (pass it to `finish(md5:)`).
    private let hashMD5: Bool

    init(mode: PayloadMode, headers: [String: String], hashMD5: Bool = true) throws {
        self.mode = mode
        self.hashMD5 = hashMD5
        switch mode {
        case .unsigned: chunked = false
        case .signedHex: chunked = false; sha256 = SHA256()
        case .streamingSigned(let seed, _, _, _, _): chunked = true; previousSignature = seed
        case .streamingUnsignedTrailer: chunked = true
        }
        if let m = headers["content-md5"] {
            guard let d = Data(base64Encoded: m.trimmingCharacters(in: .whitespaces)), d.count == 16 else { throw S3Error.invalidDigest }
            contentMD5 = Array(d)
        } else {
            contentMD5 = nil
        }
        if chunked {
            guard let l = headers["x-amz-decoded-content-length"], let n = Int(l), n >= 0 else { throw S3Error.missingContentLength }
            expectedLength = n
            if let t = headers["x-amz-trailer"] {
                let name = t.trimmingCharacters(in: .whitespaces).lowercased()
                guard name.hasPrefix("x-amz-checksum-"), let c = RunningChecksum(name: String(name.dropFirst("x-amz-checksum-".count))) else {
                    throw S3Error.invalidArgument("Unsupported x-amz-trailer \(t)")
                }
                checksum = c
                checksumHeaderName = name
            }
        } else {
            expectedLength = headers["content-length"].flatMap { Int($0) }
        }
        // A checksum sent as a header (botocore does this over plain HTTP).
        for algo in ["crc32", "crc32c", "sha1", "sha256"] {
            if let v = headers["x-amz-checksum-\(algo)"], checksum == nil {
                checksum = RunningChecksum(name: algo)
                expectedChecksum = v.trimmingCharacters(in: .whitespaces)
                checksumHeaderName = "x-amz-checksum-\(algo)"
            }
        }
        if checksum == nil, let other = headers.keys.first(where: { $0.hasPrefix("x-amz-checksum-") && $0 != "x-amz-checksum-algorithm" && $0 != "x-amz-checksum-type" }) {
            throw S3Error.invalidArgument("Unsupported checksum \(other)")
        }
    }

    private func consumePayload(_ p: UnsafeRawBufferPointer) {
        if hashMD5 { md5.update(bufferPointer: p) }
        sha256?.update(bufferPointer: p)
        chunkHash?.update(bufferPointer: p)
        checksum?.update(p)
        decodedBytes += p.count
    }

    /// Feeds wire bytes; returns the payload bytes they carried.
    func feed(_ buffer: ByteBuffer) throws -> [ByteBuffer] {
        if !chunked {
            buffer.withUnsafeReadableBytes { consumePayload($0) }
            if let e = expectedLength, decodedBytes > e { throw S3Error.incompleteBody }
            return [buffer]
        }
        var out: [ByteBuffer] = []
        var buf = buffer
        while buf.readableBytes > 0 {
            switch state {
            case .header, .trailer:
                guard let b = buf.readInteger(as: UInt8.self) else { break }
                if b == 10 {
                    if line.last == 13 { line.removeLast() }
                    let text = String(decoding: line, as: UTF8.self)
                    line.removeAll(keepingCapacity: true)
                    if case .header = state { try chunkHeader(text) } else { try trailerLine(text) }
                } else {
                    line.append(b)
                    if line.count > 8192 { throw S3Error.incompleteBody }
                }
            case .data(let remaining):
                let n = min(remaining, buf.readableBytes)
                let slice = buf.readSlice(length: n)!
                slice.withUnsafeReadableBytes { consumePayload($0) }
                out.append(slice)
                state = remaining - n == 0 ? .dataCR : .data(remaining - n)
            case .dataCR:
                guard buf.readInteger(as: UInt8.self) == 13 else { throw S3Error.incompleteBody }
                state = .dataLF
            case .dataLF:
                guard buf.readInteger(as: UInt8.self) == 10 else { throw S3Error.incompleteBody }
                try endOfChunk()
                state = .header
            case .done:
                // Anything after the final CRLF is ignored only if it is whitespace.
                guard let b = buf.readInteger(as: UInt8.self), b == 13 || b == 10 else { throw S3Error.incompleteBody }
            }
        }
        if let e = expectedLength, decodedBytes > e { throw S3Error.incompleteBody }
        return out
    }

    private func chunkHeader(_ text: String) throws {
        let parts = text.split(separator: ";", maxSplits: 1)
        guard let sizeText = parts.first, let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
            throw S3Error.incompleteBody
        }
        chunkSignature = nil
        if parts.count == 2 {
            let ext = parts[1].trimmingCharacters(in: .whitespaces)
            if ext.hasPrefix("chunk-signature=") { chunkSignature = String(ext.dropFirst("chunk-signature=".count)) }
        }
        if case .streamingSigned = mode {
            guard chunkSignature != nil else { throw S3Error.signatureMismatch }
            chunkHash = SHA256()
        }
        if size == 0 {
            try endOfChunk()
            sawFinalChunk = true
            state = .trailer
        } else {
            state = .data(size)
        }
    }

    private func endOfChunk() throws {
        guard case .streamingSigned(_, let key, let amzDate, let signer, _) = mode, var h = chunkHash else { return }
        let digest = Hex.encode(h.finalize())
        h = SHA256()
        chunkHash = nil
        let expected = signer.chunkSignature(key: SymmetricKey(data: key), amzDate: amzDate, previous: previousSignature, chunkSHA256Hex: digest)
        guard let got = chunkSignature, constantTimeEquals(expected, got) else { throw S3Error.signatureMismatch }
        previousSignature = got
    }

    private func trailerLine(_ text: String) throws {
        if text.isEmpty {
            state = .done
            return
        }
        trailerLines.append(text)
        guard let colon = text.firstIndex(of: ":") else { throw S3Error.incompleteBody }
        let name = text[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        let value = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        if name == "x-amz-trailer-signature" {
            guard case .streamingSigned(_, let key, let amzDate, let signer, true) = mode else { return }
            let body = trailerLines.dropLast().map { l -> String in
                let c = l.firstIndex(of: ":")!
                return l[..<c].trimmingCharacters(in: .whitespaces).lowercased() + ":" + l[l.index(after: c)...].trimmingCharacters(in: .whitespaces) + "\n"
            }.joined()
            let expected = signer.trailerSignature(key: SymmetricKey(data: key), amzDate: amzDate, previous: previousSignature, trailerText: body)
            guard constantTimeEquals(expected, value) else { throw S3Error.signatureMismatch }
        } else if name == checksumHeaderName {
            expectedChecksum = value
        }
    }

    /// Called at the end of the wire body: throws the S3 error for any failed check.
    func finish(md5 external: [UInt8]? = nil) throws {
        if let external { cachedMD5 = external }
        if chunked {
            guard sawFinalChunk, case .done = state else { throw S3Error.incompleteBody }
            if case .streamingSigned(_, _, _, _, true) = mode, !trailerLines.contains(where: { $0.lowercased().hasPrefix("x-amz-trailer-signature") }) {
                throw S3Error.signatureMismatch
            }
        }
        if let e = expectedLength, decodedBytes != e { throw S3Error.incompleteBody }
        if case .signedHex(let want) = mode, var s = sha256 {
            let got = Hex.encode(s.finalize())
            s = SHA256()
            guard got == want.lowercased() else { throw S3Error.contentSHA256Mismatch }
        }
        if let c = checksum {
            guard let want = expectedChecksum else { throw S3Error.invalidRequest }
            guard c.finalizeBase64() == want else {
                throw S3Error("BadDigest", 400, "The \(c.algorithm.rawValue.uppercased()) you specified did not match the calculated checksum.")
            }
        }
        if let want = contentMD5 {
            guard Array(md5Digest) == want else { throw S3Error.badDigest }
        }
    }

    private var cachedMD5: [UInt8]?
    /// MD5 of the payload (call after the body ended).
    var md5Digest: [UInt8] {
        if let c = cachedMD5 { return c }
        let d = Array(md5.finalize())
        cachedMD5 = d
        return d
    }
}
