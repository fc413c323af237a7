import Crypto
import Foundation

/// Hex and encoding helpers shared by the verifier and the proxy signer.
public enum Hex {
    static let digits: [UInt8] = Array("0123456789abcdef".utf8)
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
    public static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let h = nibble(u[i]), let l = nibble(u[i + 1]) else { return nil }
            out.append(h << 4 | l)
            i += 2
        }
        return out
    }
    static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
}

public enum URIEncoding {
    /// AWS URI encoding: every byte except A-Z a-z 0-9 - _ . ~ is %XX (upper hex); '/' kept when `keepSlash`.
    public static func encode(_ s: String, keepSlash: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            switch b {
            case 65...90, 97...122, 48...57, 45, 95, 46, 126:
                out.append(b)
            case 47 where keepSlash:
                out.append(b)
            default:
                out.append(37)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Percent-decoding; `plusAsSpace` for query strings. Returns nil on invalid escapes or invalid UTF-8.
    public static func decode(_ s: Substring, plusAsSpace: Bool = false) -> String? {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 37 {
                guard it.count >= 2, let h = Hex.nibble(it[it.startIndex]), let l = Hex.nibble(it[it.startIndex + 1]) else { return nil }
                out.append(h << 4 | l)
                it = it.dropFirst(2)
            } else if b == 43 && plusAsSpace {
                out.append(32)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}

/// Query string parsed into ordered (name, value) pairs, decoded.
public struct QueryItems: Sendable {
    public var items: [(String, String)]
    public init(_ raw: Substring?) {
        items = []
        guard let raw, !raw.isEmpty else { return }
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            if let eq = part.firstIndex(of: "=") {
                let n = URIEncoding.decode(part[..<eq], plusAsSpace: true) ?? String(part[..<eq])
                let v = URIEncoding.decode(part[part.index(after: eq)...], plusAsSpace: true) ?? String(part[part.index(after: eq)...])
                items.append((n, v))
            } else {
                items.append((URIEncoding.decode(part, plusAsSpace: true) ?? String(part), ""))
            }
        }
    }
    public init(items: [(String, String)]) { self.items = items }
    public subscript(_ name: String) -> String? { items.first { $0.0 == name }?.1 }
    public func has(_ name: String) -> Bool { items.contains { $0.0 == name } }
    /// SigV4 canonical query string (optionally leaving one parameter out: the presigned signature).
    public func canonical(excluding: String? = nil) -> String {
        items.filter { $0.0 != excluding }
            .map { (URIEncoding.encode($0.0, keepSlash: false), URIEncoding.encode($0.1, keepSlash: false)) }
            .sorted { a, b in a.0 == b.0 ? Array(a.1.utf8).lexicographicallyPrecedes(Array(b.1.utf8)) : Array(a.0.utf8).lexicographicallyPrecedes(Array(b.0.utf8)) }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }
}

public struct Credentials: Sendable, Equatable {
    public var accessKeyId: String
    public var secretAccessKey: String
    public init(accessKeyId: String, secretAccessKey: String) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
    }
}

/// AWS Signature Version 4, the one signer type used both to verify inbound requests and to sign
/// requests to the upstream S3 endpoint.
public struct SigV4Signer: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    public let credentials: Credentials
    public let region: String
    public let service: String

    public init(credentials: Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
                      Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
    }

    public static func parseAmzDate(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count == 16, u[8] == 84, u[15] == 90 else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r { guard u[i] >= 48 && u[i] <= 57 else { return nil }; v = v * 10 + Int(u[i] - 48) }
            return v
        }
        guard let y = num(0..<4), let mo = num(4..<6), let d = num(6..<8), let h = num(9..<11), let mi = num(11..<13), let se = num(13..<15),
              (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        var tmv = tm()
        tmv.tm_year = Int32(y - 1900); tmv.tm_mon = Int32(mo - 1); tmv.tm_mday = Int32(d)
        tmv.tm_hour = Int32(h); tmv.tm_min = Int32(mi); tmv.tm_sec = Int32(se)
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tmv)))
    }

    public func scope(date: String) -> String { "\(date.prefix(8))/\(region)/\(service)/aws4_request" }

    public func signingKey(date: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(s.utf8), using: key))
        }
        var k = SymmetricKey(data: Array("AWS4\(credentials.secretAccessKey)".utf8))
        k = hmac(k, String(date.prefix(8)))
        k = hmac(k, region)
        k = hmac(k, service)
        return hmac(k, "aws4_request")
    }

    public static func sha256Hex(_ s: String) -> String { Hex.encode(SHA256.hash(data: Array(s.utf8))) }

    public static func canonicalHeaderValue(_ v: String) -> String {
        // trim, collapse runs of spaces
        var out = ""
        var lastSpace = false
        for ch in v.trimmingCharacters(in: .whitespaces) {
            if ch == " " || ch == "\t" {
                if !lastSpace { out.append(" ") }
                lastSpace = true
            } else {
                out.append(ch); lastSpace = false
            }
        }
        return out
    }

    /// Canonical request: `headers` must already hold lowercased names → value (multi-values joined by ",").
    public static func canonicalRequest(method: String, canonicalURI: String, canonicalQuery: String,
                                        headers: [String: String], signedHeaders: [String], payloadHash: String) -> String {
        var s = method + "\n" + canonicalURI + "\n" + canonicalQuery + "\n"
        for h in signedHeaders {
            s += h + ":" + canonicalHeaderValue(headers[h] ?? "") + "\n"
        }
        s += "\n" + signedHeaders.joined(separator: ";") + "\n" + payloadHash
        return s
    }

    public func stringToSign(amzDate: String, canonicalRequest: String) -> String {
        Self.algorithm + "\n" + amzDate + "\n" + scope(date: amzDate) + "\n" + Self.sha256Hex(canonicalRequest)
    }

    public func signature(amzDate: String, canonicalRequest: String) -> String {
        signature(key: signingKey(date: amzDate), stringToSign: stringToSign(amzDate: amzDate, canonicalRequest: canonicalRequest))
    }

    public func signature(key: SymmetricKey, stringToSign: String) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
    }

    /// Chunk signature for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`.
    public func chunkSignature(key: SymmetricKey, amzDate: String, previous: String, chunkSHA256Hex: String) -> String {
        let sts = "AWS4-HMAC-SHA256-PAYLOAD\n" + amzDate + "\n" + scope(date: amzDate) + "\n" + previous + "\n" + Self.emptySHA256 + "\n" + chunkSHA256Hex
        return signature(key: key, stringToSign: sts)
    }

    /// Trailer signature for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`.
    public func trailerSignature(key: SymmetricKey, amzDate: String, previous: String, trailerText: String) -> String {
        let sts = "AWS4-HMAC-SHA256-TRAILER\n" + amzDate + "\n" + scope(date: amzDate) + "\n" + previous + "\n" + Self.sha256Hex(trailerText)
        return signature(key: key, stringToSign: sts)
    }

    /// Signs an outgoing request: returns the headers to add (`x-amz-date`, `x-amz-content-sha256`, `authorization`).
    /// `headers` are the other headers to sign (name → value, any case); `host` must be among them.
    public func sign(method: String, canonicalURI: String, query: QueryItems, headers: [String: String],
                     payloadHash: String, date: Date = Date()) -> [(String, String)] {
        let amz = Self.amzDate(date)
        var h: [String: String] = [:]
        for (k, v) in headers { h[k.lowercased()] = v }
        h["x-amz-date"] = amz
        h["x-amz-content-sha256"] = payloadHash
        let signed = h.keys.sorted()
        let creq = Self.canonicalRequest(method: method, canonicalURI: canonicalURI, canonicalQuery: query.canonical(),
                                         headers: h, signedHeaders: signed, payloadHash: payloadHash)
        let sig = signature(amzDate: amz, canonicalRequest: creq)
        let auth = "\(Self.algorithm) Credential=\(credentials.accessKeyId)/\(scope(date: amz)), SignedHeaders=\(signed.joined(separator: ";")), Signature=\(sig)"
        return [("x-amz-date", amz), ("x-amz-content-sha256", payloadHash), ("authorization", auth)]
    }

    /// Builds a presigned URL query (for tests and tools).
    public func presign(method: String, canonicalURI: String, host: String, query: QueryItems = QueryItems(nil),
                        expires: Int, date: Date = Date()) -> String {
        let amz = Self.amzDate(date)
        var q = query
        q.items.append(("X-Amz-Algorithm", Self.algorithm))
        q.items.append(("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope(date: amz))"))
        q.items.append(("X-Amz-Date", amz))
        q.items.append(("X-Amz-Expires", String(expires)))
        q.items.append(("X-Amz-SignedHeaders", "host"))
        let creq = Self.canonicalRequest(method: method, canonicalURI: canonicalURI, canonicalQuery: q.canonical(),
                                         headers: ["host": host], signedHeaders: ["host"], payloadHash: "UNSIGNED-PAYLOAD")
        let sig = signature(amzDate: amz, canonicalRequest: creq)
        return q.canonical() + "&X-Amz-Signature=" + sig
    }
}

/// Constant-time comparison of two ASCII strings (signatures).
public func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        let p = i < x.count ? x[i] : 0
        let q = i < y.count ? y[i] : 0
        diff |= p ^ q
    }
    return diff == 0
}

/// Digest helpers (also used by tests and tools).
public enum Digests {
    public static func sha256Hex(_ b: [UInt8]) -> String { Hex.encode(SHA256.hash(data: b)) }
    public static func md5Hex(_ b: [UInt8]) -> String { Hex.encode(Insecure.MD5.hash(data: b)) }
    public static func md5Base64(_ b: [UInt8]) -> String { Data(Insecure.MD5.hash(data: b)).base64EncodedString() }
}
