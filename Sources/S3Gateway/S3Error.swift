import Foundation

/// An S3 error: code, HTTP status and message, rendered as S3's XML error body.
public struct S3Error: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var status: Int
    public var message: String
    public var resource: String = ""

    public init(_ code: String, _ status: Int, _ message: String) {
        self.code = code; self.status = status; self.message = message
    }
    public var description: String { "\(code) (\(status)): \(message)" }

    public func xml(requestId: String) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>\(XML.escape(code))</Code><Message>\(XML.escape(message))</Message>"
            + (resource.isEmpty ? "" : "<Resource>\(XML.escape(resource))</Resource>")
            + "<RequestId>\(requestId)</RequestId></Error>"
    }

    public static let noSuchKey = S3Error("NoSuchKey", 404, "The specified key does not exist.")
    public static let noSuchBucket = S3Error("NoSuchBucket", 404, "The specified bucket does not exist.")
    public static let noSuchUpload = S3Error("NoSuchUpload", 404, "The specified multipart upload does not exist.")
    public static let preconditionFailed = S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    public static let badDigest = S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    public static let invalidDigest = S3Error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
    public static let invalidPart = S3Error("InvalidPart", 400, "One or more of the specified parts could not be found.")
    public static let invalidPartOrder = S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order.")
    public static let entityTooSmall = S3Error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size.")
    public static let invalidRange = S3Error("InvalidRange", 416, "The requested range is not satisfiable")
    public static let accessDenied = S3Error("AccessDenied", 403, "Access Denied")
    public static let signatureMismatch = S3Error("SignatureDoesNotMatch", 403,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
    public static let invalidAccessKey = S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")
    public static let timeSkewed = S3Error("RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large.")
    public static let bucketNotEmpty = S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty")
    public static let bucketExists = S3Error("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it.")
    public static let invalidBucketName = S3Error("InvalidBucketName", 400, "The specified bucket is not valid.")
    public static let keyTooLong = S3Error("KeyTooLongError", 400, "Your key is too long")
    public static let invalidKey = S3Error("InvalidArgument", 400, "Object key is not allowed by this gateway (empty, '.', '..' or reserved segment, absolute, or NUL).")
    public static let contentSHA256Mismatch = S3Error("XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed.")
    public static let incompleteBody = S3Error("IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
    public static let malformedXML = S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema.")
    public static let notImplemented = S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented.")
    public static let methodNotAllowed = S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
    public static let internalError = S3Error("InternalError", 500, "We encountered an internal error. Please try again.")
    public static let missingContentLength = S3Error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
    public static let badChecksum = S3Error("BadDigest", 400, "The checksum you specified did not match the calculated checksum.")
    public static let invalidRequest = S3Error("InvalidRequest", 400, "Invalid Request")
    public static let expired = S3Error("AccessDenied", 403, "Request has expired")
    public static func malformedAuth(_ m: String) -> S3Error { S3Error("AuthorizationHeaderMalformed", 400, m) }
    public static func invalidArgument(_ m: String) -> S3Error { S3Error("InvalidArgument", 400, m) }
}

enum XML {
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                if ch.value < 0x20 && ch != "\n" && ch != "\t" && ch != "\r" { out += "&#\(ch.value);" } else { out.unicodeScalars.append(ch) }
            }
        }
        return out
    }

    static func unescape(_ s: Substring) -> String {
        guard s.contains("&") else { return String(s) }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "&", let semi = s[i...].firstIndex(of: ";") {
                let ent = s[s.index(after: i)..<semi]
                switch ent {
                case "amp": out += "&"
                case "lt": out += "<"
                case "gt": out += ">"
                case "quot": out += "\""
                case "apos": out += "'"
                default:
                    if ent.hasPrefix("#x"), let v = UInt32(ent.dropFirst(2), radix: 16), let u = Unicode.Scalar(v) { out.unicodeScalars.append(u) }
                    else if ent.hasPrefix("#"), let v = UInt32(ent.dropFirst()), let u = Unicode.Scalar(v) { out.unicodeScalars.append(u) }
                    else { out += "&" + ent + ";" }
                }
                i = s.index(after: semi)
            } else {
                out.append(s[i]); i = s.index(after: i)
            }
        }
        return out
    }

    /// All inner texts of `<tag>...</tag>` elements (non-nested tags only), in order.
    static func elements(_ tag: String, in s: Substring) -> [Substring] {
        var out: [Substring] = []
        var rest = s
        let open = "<\(tag)>", openAttr = "<\(tag) ", close = "</\(tag)>"
        while true {
            var start: Range<Substring.Index>? = rest.range(of: open)
            if let a = rest.range(of: openAttr), start == nil || a.lowerBound < start!.lowerBound,
               let gt = rest[a.upperBound...].firstIndex(of: ">") {
                start = a.lowerBound..<rest.index(after: gt)
            }
            guard let st = start, let end = rest[st.upperBound...].range(of: close) else { break }
            out.append(rest[st.upperBound..<end.lowerBound])
            rest = rest[end.upperBound...]
        }
        return out
    }

    static func first(_ tag: String, in s: Substring) -> String? { elements(tag, in: s).first.map { unescape($0) } }

    static func date(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let ms = Int((d.timeIntervalSince1970 - floor(d.timeIntervalSince1970)) * 1000)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
                      Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec), ms)
    }

    static func httpDate(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return days[Int(tmv.tm_wday)] + String(format: ", %02d ", Int(tmv.tm_mday)) + months[Int(tmv.tm_mon)]
            + String(format: " %04d %02d:%02d:%02d GMT", Int(tmv.tm_year) + 1900, Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
    }

    /// RFC 1123 dates: `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func parseHTTPDate(_ s: String) -> Date? {
        let p = s.split(separator: " ")
        guard p.count == 6, let day = Int(p[1]), let year = Int(p[3]) else { return nil }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard let mon = months.firstIndex(of: String(p[2])) else { return nil }
        let t = p[4].split(separator: ":")
        guard t.count == 3, let h = Int(t[0]), let mi = Int(t[1]), let se = Int(t[2]) else { return nil }
        var tmv = tm()
        tmv.tm_year = Int32(year - 1900); tmv.tm_mon = Int32(mon); tmv.tm_mday = Int32(day)
        tmv.tm_hour = Int32(h); tmv.tm_min = Int32(mi); tmv.tm_sec = Int32(se)
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tmv)))
    }
}
