import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The little XML that S3 speaks, both ways: escaping for documents we write, element texts and entities
/// for documents we read, and S3's two date forms (ISO 8601 with milliseconds in bodies, RFC 1123 in headers).
public enum XML {
    public static func escape(_ s: String) -> String {
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

    public static func unescape(_ s: Substring) -> String {
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
    public static func elements(_ tag: String, in s: Substring) -> [Substring] {
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

    public static func first(_ tag: String, in s: Substring) -> String? { elements(tag, in: s).first.map { unescape($0) } }

    public static func date(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let ms = Int((d.timeIntervalSince1970 - floor(d.timeIntervalSince1970)) * 1000)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
                      Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec), ms)
    }

    public static func httpDate(_ d: Date) -> String {
        var t = time_t(d.timeIntervalSince1970)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return days[Int(tmv.tm_wday)] + String(format: ", %02d ", Int(tmv.tm_mday)) + months[Int(tmv.tm_mon)]
            + String(format: " %04d %02d:%02d:%02d GMT", Int(tmv.tm_year) + 1900, Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
    }

    /// RFC 1123 dates: `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func parseHTTPDate(_ s: String) -> Date? {
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
