import Crypto
import Foundation
import S3Client

/// Verifies inbound SigV4 requests (Authorization header and presigned URL forms) against the gateway's
/// own key pair, and tells how the body must be checked.
public struct SigV4Verifier: Sendable {
    public let credentials: Credentials
    public let region: String
    public var maxSkew: TimeInterval = 15 * 60

    public init(credentials: Credentials, region: String) {
        self.credentials = credentials
        self.region = region
    }

    struct Parsed {
        var accessKey: String
        var date: String       // yyyymmdd from the scope
        var region: String
        var service: String
        var signedHeaders: [String]
        var signature: String
    }

    static func parseCredential(_ c: String) throws -> (String, String, String, String) {
        let parts = c.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[4] == "aws4_request" else { throw S3Error.malformedAuth("The authorization header is malformed; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".") }
        return (String(parts[0]), String(parts[1]), String(parts[2]), String(parts[3]))
    }

    /// Verifies the request. `rawPath` is the path exactly as sent (still percent-encoded).
    func verify(method: String, rawPath: String, query: QueryItems, headers: [String: String], now: Date = Date()) throws -> PayloadMode {
        if let auth = headers["authorization"] {
            return try verifyHeader(auth, method: method, rawPath: rawPath, query: query, headers: headers, now: now)
        }
        if query.has("X-Amz-Signature") || query.has("X-Amz-Credential") {
            return try verifyPresigned(method: method, rawPath: rawPath, query: query, headers: headers, now: now)
        }
        throw S3Error("AccessDenied", 403, "Anonymous access is not allowed; sign the request with AWS Signature Version 4.")
    }

    private func signerFor(_ p: Parsed, amzDate: String) throws -> SigV4Signer {
        guard p.accessKey == credentials.accessKeyId else { throw S3Error.invalidAccessKey }
        guard p.service == "s3" else { throw S3Error.malformedAuth("The authorization header is malformed; incorrect service \"\(p.service)\". This endpoint belongs to \"s3\".") }
        guard p.region == region else {
            throw S3Error.malformedAuth("The authorization header is malformed; the region '\(p.region)' is wrong; expecting '\(region)'")
        }
        guard amzDate.hasPrefix(p.date) else {
            throw S3Error.malformedAuth("The authorization header is malformed; Invalid credential date. Date is not the same as X-Amz-Date.")
        }
        return SigV4Signer(credentials: credentials, region: region)
    }

    private func canonicalURIs(_ rawPath: String) -> [String] {
        var out: [String] = []
        if let decoded = URIEncoding.decode(Substring(rawPath)) {
            out.append(URIEncoding.encode(decoded, keepSlash: true))
        }
        if !out.contains(rawPath) { out.append(rawPath) }
        return out
    }

    private func check(signer: SigV4Signer, method: String, rawPath: String, query: String, headers: [String: String],
                       signedHeaders: [String], payloadHash: String, amzDate: String, signature: String) throws {
        guard signedHeaders.contains("host") else { throw S3Error.accessDenied }
        let key = signer.signingKey(date: amzDate)
        for uri in canonicalURIs(rawPath) {
            let creq = SigV4Signer.canonicalRequest(method: method, canonicalURI: uri, canonicalQuery: query, headers: headers,
                                                    signedHeaders: signedHeaders, payloadHash: payloadHash)
            let expected = signer.signature(key: key, stringToSign: signer.stringToSign(amzDate: amzDate, canonicalRequest: creq))
            if constantTimeEquals(expected, signature.lowercased()) { return }
        }
        throw S3Error.signatureMismatch
    }

    func verifyHeader(_ auth: String, method: String, rawPath: String, query: QueryItems, headers: [String: String], now: Date) throws -> PayloadMode {
        let prefix = SigV4Signer.algorithm + " "
        guard auth.hasPrefix(prefix) else {
            if auth.hasPrefix("AWS ") { throw S3Error.invalidArgument("AWS Signature Version 2 is not supported; use Signature Version 4.") }
            throw S3Error.malformedAuth("Unsupported authorization type")
        }
        var fields: [String: String] = [:]
        for f in auth.dropFirst(prefix.count).split(separator: ",") {
            let t = f.trimmingCharacters(in: .whitespaces)
            guard let eq = t.firstIndex(of: "=") else { continue }
            fields[String(t[..<eq])] = String(t[t.index(after: eq)...])
        }
        guard let cred = fields["Credential"], let sh = fields["SignedHeaders"], let sig = fields["Signature"] else {
            throw S3Error.malformedAuth("The authorization header is malformed.")
        }
        let (ak, d, r, s) = try Self.parseCredential(cred)
        let parsed = Parsed(accessKey: ak, date: d, region: r, service: s, signedHeaders: sh.split(separator: ";").map(String.init), signature: sig)
        guard let amzDate = headers["x-amz-date"] ?? headers["date"].flatMap({ XML.parseHTTPDate($0).map(SigV4Signer.amzDate) }),
              let when = SigV4Signer.parseAmzDate(amzDate) else {
            throw S3Error("AccessDenied", 403, "AWS authentication requires a valid Date or x-amz-date header")
        }
        let signer = try signerFor(parsed, amzDate: amzDate)
        guard abs(when.timeIntervalSince(now)) <= maxSkew else { throw S3Error.timeSkewed }
        guard let payloadHash = headers["x-amz-content-sha256"] else {
            throw S3Error.invalidRequest.with(message: "Missing required header for this request: x-amz-content-sha256")
        }
        try check(signer: signer, method: method, rawPath: rawPath, query: query.canonical(), headers: headers,
                  signedHeaders: parsed.signedHeaders, payloadHash: payloadHash, amzDate: amzDate, signature: parsed.signature)
        switch payloadHash {
        case "UNSIGNED-PAYLOAD": return .unsigned
        case "STREAMING-UNSIGNED-PAYLOAD-TRAILER": return .streamingUnsignedTrailer
        case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER":
            return .streamingSigned(seed: parsed.signature.lowercased(), key: signer.signingKey(date: amzDate).withUnsafeBytes { Array($0) }, amzDate: amzDate, signer: signer,
                                    trailer: payloadHash.hasSuffix("-TRAILER"))
        default:
            guard payloadHash.utf8.count == 64, Hex.decode(payloadHash) != nil else {
                throw S3Error.invalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* mode or a valid sha256 value.")
            }
            return .signedHex(payloadHash.lowercased())
        }
    }

    func verifyPresigned(method: String, rawPath: String, query: QueryItems, headers: [String: String], now: Date) throws -> PayloadMode {
        guard query["X-Amz-Algorithm"] == SigV4Signer.algorithm else { throw S3Error.invalidArgument("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"") }
        guard let cred = query["X-Amz-Credential"], let amzDate = query["X-Amz-Date"], let sig = query["X-Amz-Signature"],
              let sh = query["X-Amz-SignedHeaders"], let expText = query["X-Amz-Expires"] else {
            throw S3Error("AuthorizationQueryParametersError", 400, "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
        }
        guard let when = SigV4Signer.parseAmzDate(amzDate) else { throw S3Error("AuthorizationQueryParametersError", 400, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"") }
        guard let expires = Int(expText), expires >= 1, expires <= 604800 else {
            throw S3Error("AuthorizationQueryParametersError", 400, "X-Amz-Expires must be between 1 and 604800 seconds")
        }
        let (ak, d, r, s) = try Self.parseCredential(cred)
        let parsed = Parsed(accessKey: ak, date: d, region: r, service: s, signedHeaders: sh.split(separator: ";").map(String.init), signature: sig)
        let signer = try signerFor(parsed, amzDate: amzDate)
        if when.timeIntervalSince(now) > maxSkew { throw S3Error("AccessDenied", 403, "Request is not valid yet") }
        let payloadHash = query["X-Amz-Content-Sha256"] ?? "UNSIGNED-PAYLOAD"
        try check(signer: signer, method: method, rawPath: rawPath, query: query.canonical(excluding: "X-Amz-Signature"), headers: headers,
                  signedHeaders: parsed.signedHeaders, payloadHash: payloadHash, amzDate: amzDate, signature: parsed.signature)
        // Expiry is checked after the signature so that a forged URL cannot probe it.
        if now.timeIntervalSince(when) > TimeInterval(expires) { throw S3Error.expired }
        return payloadHash == "UNSIGNED-PAYLOAD" ? .unsigned : .signedHex(payloadHash.lowercased())
    }
}
