/// Finds the line of a key path in raw TOML text.
///
/// TOMLKit's parsed values carry no source positions, so this scans the text itself: table headers
/// (`[a.b]`, `[[a]]`), `key =` lines, dotted and quoted keys, and values spanning lines (arrays, inline
/// tables, multi-line strings). Array elements are recorded as a path component `[index]`, so
/// `["service", "command", "[1]"]` is the line of the second element of `command`.
///
/// It is meant for text TOMLKit already accepted; on anything else it stops early and never traps.
struct TOMLKeyLocator {
    private var lines: [[String]: Int] = [:]
    private var arrayTableCounts: [[String]: Int] = [:]
    private let bytes: [UInt8]
    private var pos = 0
    private var line = 1

    /// Scans `text`.
    init(text: String) {
        bytes = Array(text.utf8)
        scanDocument()
    }

    /// The line of `path` exactly, if it was seen.
    func exactLine(of path: [String]) -> Int? { lines[path] }

    /// The line of `path`, or of its nearest recorded ancestor (a missing key reports its table's header).
    func line(of path: [String]) -> Int? {
        var p = path
        while !p.isEmpty {
            if let l = lines[p] { return l }
            p.removeLast()
        }
        return nil
    }

    /// The path component used for array element `index`.
    static func element(_ index: Int) -> String { "[\(index)]" }

    // MARK: scanning

    private var atEnd: Bool { pos >= bytes.count }
    private var current: UInt8 { pos < bytes.count ? bytes[pos] : 0 }
    private func peek(_ offset: Int) -> UInt8 { pos + offset < bytes.count ? bytes[pos + offset] : 0 }

    private mutating func advance() {
        if current == UInt8(ascii: "\n") { line += 1 }
        pos += 1
    }

    private mutating func record(_ path: [String], _ line: Int) {
        if lines[path] == nil { lines[path] = line }
    }

    /// Records `path` and every ancestor not yet seen (implicit tables from dotted keys or headers).
    private mutating func recordWithAncestors(_ path: [String], _ line: Int) {
        for n in 0..<path.count {
            record(Array(path.prefix(n + 1)), line)
        }
    }

    private mutating func skipInlineSpace() {
        while current == UInt8(ascii: " ") || current == UInt8(ascii: "\t") { advance() }
    }

    private mutating func skipComment() {
        if current == UInt8(ascii: "#") {
            while !atEnd && current != UInt8(ascii: "\n") { advance() }
        }
    }

    /// Skips spaces, newlines and comments.
    private mutating func skipTrivia() {
        while !atEnd {
            switch current {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"): advance()
            case UInt8(ascii: "#"): skipComment()
            default: return
            }
        }
    }

    private mutating func scanDocument() {
        var table: [String] = []
        while true {
            skipTrivia()
            if atEnd { return }
            let start = pos
            if current == UInt8(ascii: "[") {
                let headerLine = line
                advance()
                let isArrayTable = current == UInt8(ascii: "[")
                if isArrayTable { advance() }
                guard let key = scanKey() else { return }
                skipInlineSpace()
                guard current == UInt8(ascii: "]") else { return }
                advance()
                if isArrayTable {
                    guard current == UInt8(ascii: "]") else { return }
                    advance()
                    let n = arrayTableCounts[key, default: 0]
                    arrayTableCounts[key] = n + 1
                    recordWithAncestors(key, headerLine)
                    table = key + [Self.element(n)]
                    record(table, headerLine)
                } else {
                    table = key
                    recordWithAncestors(key, headerLine)
                }
            } else {
                guard scanKeyValue(prefix: table) else { return }
            }
            skipInlineSpace()
            skipComment()
            if pos == start { return }  // no progress: give up rather than loop
        }
    }

    /// `key = value` with the key relative to `prefix`.
    private mutating func scanKeyValue(prefix: [String]) -> Bool {
        let keyLine = line
        guard let key = scanKey() else { return false }
        let path = prefix + key
        recordWithAncestors(path, keyLine)
        skipInlineSpace()
        guard current == UInt8(ascii: "=") else { return false }
        advance()
        skipInlineSpace()
        return scanValue(path: path)
    }

    /// A possibly dotted key: `a`, `a.b`, `"a b".c`, `'x'`.
    private mutating func scanKey() -> [String]? {
        var parts: [String] = []
        while true {
            skipInlineSpace()
            guard let part = scanSimpleKey() else { return nil }
            parts.append(part)
            skipInlineSpace()
            if current == UInt8(ascii: ".") {
                advance()
                continue
            }
            return parts
        }
    }

    private static func isBareKeyByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
    }

    private mutating func scanSimpleKey() -> String? {
        switch current {
        case UInt8(ascii: "\""): return scanBasicString()
        case UInt8(ascii: "'"): return scanLiteralString()
        default:
            let start = pos
            while !atEnd && Self.isBareKeyByte(current) { advance() }
            guard pos > start else { return nil }
            return String(decoding: bytes[start..<pos], as: UTF8.self)
        }
    }

    /// `"..."` (single line, escapes decoded for the common cases), or `"""..."""`.
    private mutating func scanBasicString() -> String? {
        if peek(1) == UInt8(ascii: "\"") && peek(2) == UInt8(ascii: "\"") {
            advance(); advance(); advance()
            while !atEnd {
                if current == UInt8(ascii: "\\") {
                    advance(); advance()
                    continue
                }
                if current == UInt8(ascii: "\"") && peek(1) == UInt8(ascii: "\"") && peek(2) == UInt8(ascii: "\"") {
                    advance(); advance(); advance()
                    // up to two more quotes belong to the content
                    while current == UInt8(ascii: "\"") { advance() }
                    return ""
                }
                advance()
            }
            return nil
        }
        advance()
        var out: [UInt8] = []
        while !atEnd && current != UInt8(ascii: "\n") {
            let b = current
            if b == UInt8(ascii: "\"") {
                advance()
                return String(decoding: out, as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") {
                advance()
                switch current {
                case UInt8(ascii: "n"): out.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "t"): out.append(UInt8(ascii: "\t"))
                case UInt8(ascii: "r"): out.append(UInt8(ascii: "\r"))
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "u"), UInt8(ascii: "U"):
                    let count = current == UInt8(ascii: "u") ? 4 : 8
                    var hex: [UInt8] = []
                    for _ in 0..<count {
                        advance()
                        hex.append(current)
                    }
                    if let v = UInt32(String(decoding: hex, as: UTF8.self), radix: 16), let u = Unicode.Scalar(v) {
                        out.append(contentsOf: Array(String(Character(u)).utf8))
                    }
                default: out.append(current)
                }
                advance()
                continue
            }
            out.append(b)
            advance()
        }
        return nil
    }

    /// `'...'` or `'''...'''`.
    private mutating func scanLiteralString() -> String? {
        if peek(1) == UInt8(ascii: "'") && peek(2) == UInt8(ascii: "'") {
            advance(); advance(); advance()
            while !atEnd {
                if current == UInt8(ascii: "'") && peek(1) == UInt8(ascii: "'") && peek(2) == UInt8(ascii: "'") {
                    advance(); advance(); advance()
                    while current == UInt8(ascii: "'") { advance() }
                    return ""
                }
                advance()
            }
            return nil
        }
        advance()
        let start = pos
        while !atEnd && current != UInt8(ascii: "'") && current != UInt8(ascii: "\n") { advance() }
        guard current == UInt8(ascii: "'") else { return nil }
        let s = String(decoding: bytes[start..<pos], as: UTF8.self)
        advance()
        return s
    }

    private mutating func scanValue(path: [String]) -> Bool {
        switch current {
        case UInt8(ascii: "\""): return scanBasicString() != nil
        case UInt8(ascii: "'"): return scanLiteralString() != nil
        case UInt8(ascii: "["): return scanArray(path: path)
        case UInt8(ascii: "{"): return scanInlineTable(path: path)
        default:
            let start = pos
            while !atEnd {
                switch current {
                case UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "\n"),
                    UInt8(ascii: "#"), UInt8(ascii: "\r"):
                    return pos > start
                default: advance()
                }
            }
            return pos > start
        }
    }

    private mutating func scanArray(path: [String]) -> Bool {
        advance()  // [
        var index = 0
        while true {
            skipTrivia()
            if atEnd { return false }
            if current == UInt8(ascii: "]") {
                advance()
                return true
            }
            let elementPath = path + [Self.element(index)]
            record(elementPath, line)
            guard scanValue(path: elementPath) else { return false }
            skipTrivia()
            if current == UInt8(ascii: ",") { advance() }
            index += 1
        }
    }

    private mutating func scanInlineTable(path: [String]) -> Bool {
        advance()  // {
        while true {
            skipTrivia()
            if atEnd { return false }
            if current == UInt8(ascii: "}") {
                advance()
                return true
            }
            guard scanKeyValue(prefix: path) else { return false }
            skipTrivia()
            if current == UInt8(ascii: ",") { advance() }
        }
    }
}
