/// Keeps the contents of chosen members of a tar stream as the stream passes by (ustar headers, as
/// pg_basebackup and GNU tar write them): the pg-sidecar reads a base backup's `backup_label` and
/// `backup_manifest` this way without a second pass.
public struct TarMemberCapture {
    /// The members' names (as in the archive, without a leading `./`).
    public let wanted: Set<String>
    /// Most bytes kept of one member; beyond it the member is dropped (and ``overflowed`` names it).
    public let limit: Int
    /// The wanted members seen so far, whole.
    public private(set) var captured: [String: [UInt8]] = [:]
    /// Wanted members larger than ``limit``.
    public private(set) var overflowed: Set<String> = []

    private var header: [UInt8] = []
    private var remaining = 0  // bytes of the current member's data and padding still to pass
    private var dataLeft = 0  // of its data
    private var current: String?

    public init(wanted: Set<String>, limit: Int = 64 << 20) {
        self.wanted = wanted
        self.limit = limit
        header.reserveCapacity(512)
    }

    /// The next bytes of the stream. Throws when a header does not parse.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws {
        var i = 0
        while i < bytes.count {
            if remaining == 0 {
                let n = min(512 - header.count, bytes.count - i)
                header.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<i + n]))
                i += n
                if header.count == 512 {
                    try begin()
                    header.removeAll(keepingCapacity: true)
                }
                continue
            }
            let n = min(remaining, bytes.count - i)
            let keep = min(n, dataLeft)
            if let name = current, keep > 0 { captured[name, default: []].append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<i + keep])) }
            dataLeft -= keep
            remaining -= n
            i += n
        }
    }

    private mutating func begin() throws {
        current = nil
        if header.allSatisfy({ $0 == 0 }) { return }  // the end-of-archive blocks
        func field(_ range: Range<Int>) -> String {
            let bytes = header[range].prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        let size: Int
        if header[124] & 0x80 != 0 {  // base-256 (GNU) for sizes beyond 8 GiB
            size = header[125..<136].reduce(0) { $0 << 8 | Int($1) }
        } else {
            let octal = field(124..<136).trimmedOf(" ")
            guard let value = Int(octal.isEmpty ? "0" : octal, radix: 8) else {
                throw DataToolsError(.malformedArchive, "a tar header's size is not octal: \"\(octal)\"")
            }
            size = value
        }
        let prefix = field(345..<500)
        var name = (prefix.isEmpty ? "" : prefix + "/") + field(0..<100)
        if name.hasPrefix("./") { name.removeFirst(2) }
        remaining = (size + 511) / 512 * 512
        dataLeft = size
        guard wanted.contains(name) else { return }
        if size > limit {
            overflowed.insert(name)
        } else {
            current = name
            captured[name] = []
        }
    }
}

private extension String {
    func trimmedOf(_ set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}
