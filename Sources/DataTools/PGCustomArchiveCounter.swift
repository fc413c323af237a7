// Row counts from the bytes of a pg_dump custom-format archive as they stream by (no second table scan).
// The layout follows PostgreSQL's pg_backup_archiver.c (ReadHead, ReadToc, ReadInt, ReadStr, ReadOffset)
// and pg_backup_custom.c (_ReadExtraToc, _readBlockHeader, _PrintData, _LoadLOs).
#if canImport(Glibc)
import Glibc
#endif

/// Counts the rows of every table in a pg_dump custom-format archive (`pg_dump -Fc -Z0`, archive versions
/// 1.12 to 1.16: pg_dump 11 to 17) from the archive's bytes, fed chunk by chunk as pg_dump writes them.
///
/// It reads the header and the table of contents (remembering, per `TABLE DATA` entry, its schema and
/// table), then follows the data blocks and counts the lines of each table's COPY text (one row per line;
/// the `\.` end-of-data line and what follows it are not rows). Large objects are counted, not read.
/// Memory stays constant: the data passes through without being copied.
///
/// - Important: only uncompressed archives can be counted: a compressed one (any `-Z` but 0) is refused
///   with `.compressedArchive` as soon as its header is read.
public struct PGCustomArchiveCounter: Sendable {
    /// The rows of one table in the archive.
    public typealias TableCount = PGTableRowCount

    /// Bytes consumed so far.
    public private(set) var bytesRead: Int64 = 0
    /// The archive format version (`1.14.0`), once the header is read.
    public private(set) var archiveVersion: String?
    /// The dumped database's name, from the header.
    public private(set) var databaseName: String?
    /// The version of the server that was dumped, from the header.
    public private(set) var serverVersion: String?
    /// The version of pg_dump that wrote the archive, from the header.
    public private(set) var dumpVersion: String?
    /// The byte offset where the data blocks start (just after the TOC); nil until the TOC is read.
    public private(set) var dataOffset: Int64?
    /// Large objects seen in the archive's large-object blocks.
    public private(set) var largeObjects: Int64 = 0
    /// What the TOC says about the data, once it is read (``Event/tableOfContents``).
    public private(set) var contents: Contents?

    /// What a restore needs to know of the TOC to load the data itself.
    public struct Contents: Sendable {
        /// Where the data blocks start: the header and the TOC are the bytes before.
        public var dataOffset: Int64
        /// Every `TABLE DATA` entry, in TOC order (the same order as ``finish()``'s counts and the
        /// indexes of ``Event/rows(index:_:)``).
        public var tableData: [TableData]
        /// The statements that set up a session the way pg_restore's are (the `ENCODING`, `STDSTRINGS` and
        /// `SEARCHPATH` entries' SQL, in TOC order): COPY data is in the dump's encoding.
        public var sessionStatements: [String]
        /// Entries with data that is not a table's COPY text (large objects).
        public var otherDataEntries: Int
    }

    /// A `TABLE DATA` entry: where its COPY text goes.
    public struct TableData: Sendable, Equatable {
        /// The entry's dump ID (what `pg_restore -l` lists first on its line).
        public var dumpID: Int64
        public var schema: String
        public var table: String
        /// pg_dump's `COPY schema.table (columns) FROM stdin;` for this data.
        public var copyStatement: String
    }

    /// What ``consume(_:events:)`` reports as the archive goes by, in archive order.
    public enum Event {
        /// The header and the whole TOC are read.
        case tableOfContents(Contents)
        /// COPY text of ``tableData``[index]: whole or partial lines, up to and including the `\.` line
        /// that ends it (what follows that line is not passed on).
        case rows(index: Int, UnsafeRawBufferPointer)
        /// The data block of ``tableData``[index] ended.
        case tableEnd(index: Int)
    }

    /// The longest TOC string kept (tag, description, schema): far above any identifier, small enough that
    /// a corrupt length cannot make the counter allocate without bound.
    static let maxKeptString = 1 << 20

    private var phase: Phase = .magic
    private var token: Token = .fixed(5)
    private var phaseStart: Int64 = 0
    private var fixed: [UInt8] = []
    private var kept: [UInt8] = []
    private var failure: DataToolsError?

    private var versionMinor = 0
    private var intSize = 4
    private var offSize = 8
    private var versionBytes: [UInt8] = []
    private var tocCount = 0
    private var entryIndex = 0
    private var entry = Entry()
    private var dumpIDs: Set<Int64> = []
    /// Entries with a data dumper whose data block has not been seen: pg_dump writes one for each, so an
    /// archive that ends before them was cut between two blocks.
    private var awaitingData: Set<Int64> = []
    private var tableIndex: [Int64: Int] = [:]
    private var tables: [TableCount] = []
    private var blockID: Int64 = 0
    private var blockIsData = false
    private var blockTable: Int?
    private var line = LineState.start
    /// An event that a field completed; ``run`` delivers it once the field is consumed.
    private var pending: PendingEvent?

    private enum PendingEvent { case tableOfContents, tableEnd(Int) }
    private var tableData: [TableData] = []
    private var sessionStatements: [String] = []
    private var otherDataEntries = 0

    public init() {
        fixed.reserveCapacity(32)
    }

    /// Consumes the next bytes of the archive. Throws `.malformedArchive` (corrupt), `.unsupportedArchive`
    /// (not a custom archive of version 1.12 to 1.16) or `.compressedArchive`, naming the byte offset of
    /// the field at fault; once it has thrown, it throws the same error again.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws {
        try consume(bytes) { _ in }
    }

    /// Like ``consume(_:)``, reporting the TOC's end, each table's COPY text and each table's end to
    /// `events` as they go by (an error `events` throws stops the counter and is rethrown, as its own are).
    public mutating func consume(_ bytes: UnsafeRawBufferPointer, events: (Event) throws -> Void) throws {
        if let failure { throw failure }
        do { try run(bytes, events) } catch {
            if let e = error as? DataToolsError { failure = e }
            throw error
        }
    }

    /// Ends the archive: throws `.malformedArchive` naming where it was cut when the bytes stopped inside
    /// a header, the TOC or a data block; else returns one count per `TABLE DATA` entry, in TOC order
    /// (0 for a table whose data block is empty or missing).
    public mutating func finish() throws -> [TableCount] {
        if let failure { throw failure }
        guard case .blockType = phase, case .fixed = token, fixed.isEmpty else {
            throw truncated("inside \(describe(phase)) (which starts at byte \(phaseStart))")
        }
        if let id = awaitingData.min() {
            let name = tableIndex[id].map { " (table \(tables[$0].schema).\(tables[$0].table))" } ?? ""
            let more = awaitingData.count > 1 ? " and \(awaitingData.count - 1) more" : ""
            throw truncated("before the data block of dump ID \(id)\(name)\(more) that its TOC announces")
        }
        return tables
    }

    private mutating func truncated(_ place: String) -> DataToolsError {
        let e = DataToolsError(
            .malformedArchive,
            "pg_dump archive ends at byte \(bytesRead), \(place): the dump is truncated (did pg_dump fail or get killed?)",
            detail: String(bytesRead))
        failure = e
        return e
    }

    // MARK: - Tokens

    private enum Token {
        /// A fixed-width field (magic, byte, integer, offset, string length) being collected into `fixed`.
        case fixed(Int)
        /// The body of a TOC string: kept (tag, description, schema) or skipped.
        case string(remaining: Int64, keep: Bool)
        /// The body of a data or large-object chunk: its lines counted for a table, else skipped.
        case chunk(remaining: Int64)
    }

    private mutating func run(_ bytes: UnsafeRawBufferPointer, _ events: (Event) throws -> Void) throws {
        guard var p = bytes.baseAddress else { return }
        var n = bytes.count
        while n > 0 {
            let take: Int
            switch token {
            case .fixed(let need):
                take = min(need - fixed.count, n)
                fixed.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take))
                p += take; n -= take; bytesRead += Int64(take)
                if fixed.count == need {
                    try fieldDone()
                    if let event = pending {
                        pending = nil
                        switch event {
                        case .tableOfContents: try events(.tableOfContents(contents!))
                        case .tableEnd(let t): try events(.tableEnd(index: t))
                        }
                    }
                }
            case .string(let remaining, let keep):
                take = Int(min(remaining, Int64(n)))
                if keep { kept.append(contentsOf: UnsafeRawBufferPointer(start: p, count: take)) }
                p += take; n -= take; bytesRead += Int64(take)
                if remaining == Int64(take) { try stringDone(kept) } else { token = .string(remaining: remaining - Int64(take), keep: keep) }
            case .chunk(let remaining):
                take = Int(min(remaining, Int64(n)))
                if let t = blockTable, case .dataChunkBody = phase, line != .ended {
                    let (rows, used) = Self.countRows(p.assumingMemoryBound(to: UInt8.self), take, &line)
                    tables[t].rows += rows
                    if used > 0 { try events(.rows(index: t, UnsafeRawBufferPointer(start: p, count: used))) }
                }
                p += take; n -= take; bytesRead += Int64(take)
                if remaining == Int64(take) {
                    if case .dataChunkBody = phase { expect(.dataChunkLength) } else { expect(.blobChunkLength) }
                } else {
                    token = .chunk(remaining: remaining - Int64(take))
                }
            }
        }
    }

    /// Starts reading `next`: its first field begins at the current offset.
    private mutating func expect(_ next: Phase) {
        phase = next
        phaseStart = bytesRead
        fixed.removeAll(keepingCapacity: true)
        switch next.kind {
        case .magic: token = .fixed(5)
        case .byte: token = .fixed(1)
        case .int, .string: token = .fixed(1 + intSize)
        case .offset: token = .fixed(1 + offSize)
        }
    }

    /// The integer in `fixed`: a sign byte, then `intSize` bytes, least significant first (ReadInt).
    private func integer() throws -> Int64 {
        guard fixed[0] <= 1 else { throw malformed("an integer's sign byte (0 or 1), found \(fixed[0])") }
        var v: UInt64 = 0
        for i in 0..<intSize { v |= UInt64(fixed[1 + i]) << (8 * UInt64(i)) }
        guard v <= UInt64(Int64.max) else { throw malformed("an integer that fits 64 bits") }
        return fixed[0] == 1 ? -Int64(v) : Int64(v)
    }

    private mutating func fieldDone() throws {
        if phase.kind == .string {
            let length = try integer()
            guard length >= -1 else { throw malformed("a string length (-1 or more), found \(length)") }
            let keep = keepsString(phase)
            if keep && length > Self.maxKeptString { throw malformed("a string of at most \(Self.maxKeptString) bytes, found a length of \(length)") }
            kept.removeAll(keepingCapacity: true)
            if length <= 0 { try stringDone(length < 0 ? nil : kept) } else { token = .string(remaining: length, keep: keep) }
            return
        }
        try valueDone()
    }

    private func malformed(_ expected: String) -> DataToolsError {
        DataToolsError(
            .malformedArchive, "pg_dump archive is corrupt at byte \(phaseStart), in \(describe(phase)): expected \(expected)",
            detail: String(phaseStart))
    }
}

extension PGCustomArchiveCounter {
    // MARK: - Phases

    fileprivate enum Kind { case magic, byte, int, string, offset }

    /// The TOC entry fields in archive order (ReadToc; `_ReadExtraToc` adds the data offset).
    fileprivate enum EntryField: Int, CaseIterable {
        case dumpID, hadDumper, tableOID, oid, tag, desc, section, defn, dropStmt, copyStmt, namespace, tablespace, tableAM,
            relkind, owner, withOIDs, dependency, dataOffset
    }

    fileprivate enum Phase {
        case magic, versionMajor, versionMinor, versionRevision, intSize, offSize, format, compression
        case createdAt(Int)
        case databaseName, serverVersion, dumpVersion
        case tocCount
        case entry(EntryField)
        case blockType, blockID
        case dataChunkLength, dataChunkBody
        case blobOID, blobChunkLength, blobChunkBody

        var kind: Kind {
            switch self {
            case .magic: return .magic
            case .versionMajor, .versionMinor, .versionRevision, .intSize, .offSize, .format, .blockType: return .byte
            case .databaseName, .serverVersion, .dumpVersion: return .string
            case .entry(let f):
                switch f {
                case .dumpID, .hadDumper, .section, .relkind: return .int
                case .dataOffset: return .offset
                default: return .string
                }
            default: return .int  // compression is a byte from 1.15 on: see `expect`
            }
        }

    }

    fileprivate struct Entry {
        var dumpID: Int64 = 0
        var hasData = false
        var tag: String?
        var desc: String?
        var isTableData: Bool { desc == "TABLE DATA" }
        var namespace: String?
        var defn: String?
        var copyStatement: String?
    }

    /// The TOC entries whose SQL sets up a restoring session.
    fileprivate static let sessionEntries: Set<String> = ["ENCODING", "STDSTRINGS", "SEARCHPATH"]

    /// Whether the string `phase` reads is kept (names, a table data's COPY statement, session settings).
    fileprivate func keepsString(_ phase: Phase) -> Bool {
        switch phase {
        case .databaseName, .serverVersion, .dumpVersion, .entry(.tag), .entry(.desc), .entry(.namespace): return true
        case .entry(.defn): return entry.desc.map(Self.sessionEntries.contains) ?? false
        case .entry(.copyStmt): return entry.isTableData
        default: return false
        }
    }

    fileprivate enum LineState { case start, backslash, backslashDot, middle, ended }

    /// Lines ended in `p[0..<n]`, one row each, until the `\.` line that ends COPY data (pg_dump writes
    /// `\.` then two empty lines after every table's rows; a row can never be `\.`: COPY escapes a
    /// backslash as `\\`), and how many of the `n` bytes come before the end of that line (all of them
    /// when it is not in `p`).
    fileprivate static func countRows(_ p: UnsafePointer<UInt8>, _ n: Int, _ state: inout LineState) -> (rows: Int64, used: Int) {
        var rows: Int64 = 0
        var i = 0
        while i < n {
            switch state {
            case .ended: return (rows, i)
            case .start:
                if p[i] == UInt8(ascii: "\\") { state = .backslash; i += 1; continue }
                state = .middle
            case .backslash:
                if p[i] == UInt8(ascii: ".") { state = .backslashDot; i += 1; continue }
                state = .middle
            case .backslashDot:
                if p[i] == UInt8(ascii: "\n") { state = .ended; return (rows, i + 1) }
                state = .middle
            case .middle: break
            }
            guard let nl = memchr(p + i, 0x0A, n - i) else { return (rows, n) }
            rows += 1
            i = UnsafeRawPointer(nl) - UnsafeRawPointer(p) + 1
            state = .start
        }
        return (rows, n)
    }

    fileprivate func describe(_ phase: Phase) -> String {
        switch phase {
        case .magic: return "the archive magic \"PGDMP\""
        case .versionMajor, .versionMinor, .versionRevision: return "the header's archive version"
        case .intSize: return "the header's integer size"
        case .offSize: return "the header's offset size"
        case .format: return "the header's format byte"
        case .compression: return "the header's compression field"
        case .createdAt: return "the header's creation time"
        case .databaseName: return "the header's database name"
        case .serverVersion: return "the header's server version"
        case .dumpVersion: return "the header's pg_dump version"
        case .tocCount: return "the TOC entry count"
        case .entry(let f): return "TOC entry \(entryIndex + 1) of \(tocCount) (field \(f))"
        case .blockType: return "a data block's type"
        case .blockID: return "a data block's dump ID"
        case .dataChunkLength: return "a chunk length in the data block of dump ID \(blockID)"
        case .dataChunkBody: return "a data chunk of dump ID \(blockID)"
        case .blobOID: return "a large object's OID in the block of dump ID \(blockID)"
        case .blobChunkLength: return "a large-object chunk length in the block of dump ID \(blockID)"
        case .blobChunkBody: return "a large-object chunk in the block of dump ID \(blockID)"
        }
    }

    // MARK: - Values

    /// A complete fixed-width value of the current phase is in `fixed`.
    fileprivate mutating func valueDone() throws {
        switch phase {
        case .magic:
            guard fixed == Array("PGDMP".utf8) else { throw unsupported("does not start with \"PGDMP\": it is not a pg_dump custom-format archive") }
            expect(.versionMajor)
        case .versionMajor:
            versionBytes = [fixed[0]]
            guard fixed[0] == 1 else { throw unsupported("has archive version \(fixed[0]).x: only 1.12 to 1.16 (pg_dump 11 to 17) can be read") }
            expect(.versionMinor)
        case .versionMinor:
            versionMinor = Int(fixed[0])
            versionBytes.append(fixed[0])
            guard (12...16).contains(versionMinor) else {
                throw unsupported("has archive version 1.\(versionMinor): only 1.12 to 1.16 (pg_dump 11 to 17) can be read")
            }
            expect(.versionRevision)
        case .versionRevision:
            versionBytes.append(fixed[0])
            archiveVersion = versionBytes.map(String.init).joined(separator: ".")
            expect(.intSize)
        case .intSize:
            guard (1...8).contains(fixed[0]) else { throw malformed("an integer size of 1 to 8 bytes, found \(fixed[0])") }
            intSize = Int(fixed[0])
            expect(.offSize)
        case .offSize:
            guard (1...16).contains(fixed[0]) else { throw malformed("an offset size of 1 to 16 bytes, found \(fixed[0])") }
            offSize = Int(fixed[0])
            expect(.format)
        case .format:
            guard fixed[0] == 1 else { throw unsupported("has archive format \(fixed[0]): only the custom format (1, pg_dump -Fc) can be read") }
            phase = .compression
            phaseStart = bytesRead
            fixed.removeAll(keepingCapacity: true)
            token = .fixed(versionMinor >= 15 ? 1 : 1 + intSize)  // the algorithm byte from 1.15, a gzip level before
        case .compression:
            try checkUncompressed()
            expect(.createdAt(0))
        case .createdAt(let i):
            _ = try integer()
            expect(i < 6 ? .createdAt(i + 1) : .databaseName)
        case .tocCount:
            let count = try integer()
            guard count >= 0 && count <= Int64(Int32.max) else { throw malformed("a TOC entry count of 0 or more, found \(count)") }
            tocCount = Int(count)
            entryIndex = 0
            startEntryOrData()
        case .entry(let f):
            try entryValue(f)
        case .blockType:
            switch fixed[0] {
            case 1, 3: blockIsData = fixed[0] == 1; expect(.blockID)
            default: throw malformed("a data block type (1 = table data, 3 = large objects), found \(fixed[0])")
            }
        case .blockID:
            let id = try integer()
            guard dumpIDs.contains(id) else { throw malformed("the dump ID of a TOC entry, found \(id), which the TOC does not list") }
            guard awaitingData.remove(id) != nil else {
                throw malformed("the dump ID of an entry with data still to come, found \(id) (no data, or its data was already read)")
            }
            blockID = id
            if blockIsData {
                blockTable = tableIndex[id]
                line = .start
                expect(.dataChunkLength)
            } else {
                expect(.blobOID)
            }
        case .dataChunkLength, .blobChunkLength:
            let length = try integer()
            guard length >= 0 else { throw malformed("a chunk length of 0 or more, found \(length)") }
            let inData: Bool
            if case .dataChunkLength = phase { inData = true } else { inData = false }
            if length == 0 {
                if inData, let t = blockTable { pending = .tableEnd(t) }
                expect(inData ? .blockType : .blobOID)
            } else {
                phase = inData ? .dataChunkBody : .blobChunkBody
                phaseStart = bytesRead
                token = .chunk(remaining: length)
            }
        case .blobOID:
            let oid = try integer()
            guard oid >= 0 else { throw malformed("a large object's OID, found \(oid)") }
            if oid == 0 {
                expect(.blockType)
            } else {
                largeObjects += 1
                expect(.blobChunkLength)
            }
        case .databaseName, .serverVersion, .dumpVersion, .dataChunkBody, .blobChunkBody:
            preconditionFailure("\(phase) is not a fixed-width value")
        }
    }

    fileprivate mutating func checkUncompressed() throws {
        let what: String
        if versionMinor >= 15 {
            switch fixed[0] {
            case 0: return
            case 1: what = "gzip"
            case 2: what = "lz4"
            case 3: what = "zstd"
            default: what = "compression algorithm \(fixed[0])"
            }
        } else {
            let level = try integer()
            if level == 0 { return }
            what = level < 0 ? "gzip (default level)" : "gzip (level \(level))"
        }
        throw DataToolsError(
            .compressedArchive,
            "pg_dump archive (version \(archiveVersion ?? "?")) is compressed with \(what) (header field at byte \(phaseStart)): "
                + "only uncompressed archives can be counted as they stream; dump with pg_dump -Fc -Z0",
            detail: String(phaseStart))
    }

    fileprivate func unsupported(_ what: String) -> DataToolsError {
        DataToolsError(.unsupportedArchive, "pg_dump archive (byte \(phaseStart)) \(what)", detail: String(phaseStart))
    }

    /// A complete string of the current phase (nil: the archive's NULL string).
    fileprivate mutating func stringDone(_ bytes: [UInt8]?) throws {
        let text = bytes.map { String(decoding: $0, as: UTF8.self) }
        switch phase {
        case .databaseName: databaseName = text; expect(.serverVersion)
        case .serverVersion: serverVersion = text; expect(.dumpVersion)
        case .dumpVersion: dumpVersion = text; expect(.tocCount)
        case .entry(let f):
            switch f {
            case .tag: entry.tag = text
            case .desc: entry.desc = text
            case .defn: entry.defn = text
            case .copyStmt: entry.copyStatement = text
            case .namespace: entry.namespace = text
            case .dependency:
                if text == nil { expect(.entry(.dataOffset)); return }  // the NULL string ends the list
                expect(.entry(.dependency))
                return
            default: break
            }
            expect(.entry(nextField(after: f)))
        default:
            preconditionFailure("\(phase) is not a string")
        }
    }

    fileprivate func nextField(after f: EntryField) -> EntryField {
        var next = EntryField(rawValue: f.rawValue + 1)!
        if next == .tableAM && versionMinor < 14 { next = .relkind }
        if next == .relkind && versionMinor < 16 { next = .owner }
        return next
    }

    fileprivate mutating func entryValue(_ f: EntryField) throws {
        switch f {
        case .dumpID:
            let id = try integer()
            guard id > 0 else { throw malformed("a dump ID above 0, found \(id)") }
            guard dumpIDs.insert(id).inserted else { throw malformed("a new dump ID, found \(id) a second time") }
            entry = Entry(dumpID: id)
        case .hadDumper:
            entry.hasData = try integer() != 0
        case .section, .relkind:
            _ = try integer()
        case .dataOffset:
            // K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET, K_OFFSET_NO_DATA; the position itself is not needed
            guard (1...3).contains(fixed[0]) else { throw malformed("a data offset flag (1, 2 or 3), found \(fixed[0])") }
            if entry.hasData { awaitingData.insert(entry.dumpID) }
            if entry.isTableData {
                tableIndex[entry.dumpID] = tables.count
                tables.append(TableCount(schema: entry.namespace ?? "", table: entry.tag ?? "", rows: 0))
                tableData.append(TableData(
                    dumpID: entry.dumpID, schema: entry.namespace ?? "", table: entry.tag ?? "", copyStatement: entry.copyStatement ?? ""))
            } else if entry.hasData {
                otherDataEntries += 1
            }
            if let desc = entry.desc, Self.sessionEntries.contains(desc), let defn = entry.defn, !defn.isEmpty {
                sessionStatements.append(defn)
            }
            entryIndex += 1
            startEntryOrData()
            return
        default:
            preconditionFailure("\(f) is not a fixed-width field")
        }
        expect(.entry(nextField(after: f)))
    }

    fileprivate mutating func startEntryOrData() {
        if entryIndex < tocCount {
            expect(.entry(.dumpID))
        } else {
            dataOffset = bytesRead
            contents = Contents(dataOffset: bytesRead, tableData: tableData, sessionStatements: sessionStatements, otherDataEntries: otherDataEntries)
            pending = .tableOfContents
            expect(.blockType)
        }
    }
}
