import DataTools
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Restores one pg_dump custom-format archive into a database as its bytes arrive, loading the tables'
/// data over several connections at once.
///
/// The archive's header and TOC come first: once they are in, they are written to a file of their own
/// and `pg_restore --section=pre-data` creates the schema from it. The data blocks that follow are COPY
/// text; ``PGParallelCopy`` loads them over `connections` sessions (a large table on several server
/// processes, which one pg_restore cannot do). At the end, `pg_restore -j` runs the rest of the TOC
/// (sequence values, then indexes, constraints, triggers, grants) from the same file.
///
/// Archives this cannot follow are handed whole to one `pg_restore` reading stdin, as before: large
/// objects (their data is not COPY text), compressed archives (`-Z` above 0) and versions the archive
/// reader does not know; also when `connections` is 1.
final class PGArchiveRestore: @unchecked Sendable {  // `lock` guards `tool`, `copy` and `stopped`; the rest belongs to the feeding thread
    /// How to run pg_restore against the target database.
    struct Tools {
        /// pg_restore of the server's major version.
        var pgRestore: String
        /// Connection arguments ending with `-d <database>`.
        var target: [String]
        /// Its environment (PGOPTIONS).
        var environment: [String: String]
    }

    private enum Mode {
        case readingTOC
        case parallel(PGParallelCopy)
        case piped(ToolProcess)
    }

    private let tools: Tools
    private let server: PGServer
    private let database: String
    private let connections: Int
    private let onTool: (Int32) -> Void

    private var mode = Mode.readingTOC
    private var counter = PGCustomArchiveCounter()
    private var toc: [UInt8] = []
    private var tableDumpIDs: Set<Int64> = []
    private var files: [String] = []
    /// The tables' rows as COPY loaded them (each checked against the archive's count), once the parallel
    /// load finished; nil when one pg_restore read the archive (its rows are counted in the database).
    private(set) var loadedTables: [PGCustomArchiveCounter.TableCount]?

    private let lock = NSLock()
    private var tool: ToolProcess?
    private var copy: PGParallelCopy?
    private var stopped = false

    /// `onTool` hears each pg_restore's pid as it starts (0 when none runs).
    init(tools: Tools, server: PGServer, database: String, connections: Int, onTool: @escaping (Int32) -> Void) {
        self.tools = tools
        self.server = server
        self.database = database
        self.connections = connections
        self.onTool = onTool
    }

    /// Whether the data is loaded over several connections (known once the TOC was read).
    var isParallel: Bool {
        if case .parallel = mode { return true }
        return false
    }

    /// The next bytes of the archive. Throws `CancellationError` once ``cancel()`` was called.
    func feed(_ bytes: UnsafeRawBufferPointer) throws {
        try stoppingOnCancel { try take(bytes) }
    }

    /// The archive ended (and was checked): loads the rest and waits for everything to be in.
    func finish() throws {
        try stoppingOnCancel { try complete() }
    }

    /// What `body` throws, except that after ``cancel()`` every failure (a killed tool, an abandoned
    /// COPY) is the cancellation it is.
    private func stoppingOnCancel(_ body: () throws -> Void) throws {
        do { try body() } catch {
            if lock.withLock({ stopped }) { throw CancellationError() }
            throw error
        }
    }

    private func take(_ bytes: UnsafeRawBufferPointer) throws {
        switch mode {
        case .piped(let tool):
            try tool.writeStdin(bytes)
        case .parallel(let copy):
            try counter.consume(bytes) { event in try Self.route(event, copy) }
        case .readingTOC:
            let start = counter.bytesRead
            var tocBytesHere: Int?
            do {
                try counter.consume(bytes) { event in
                    switch (event, mode) {
                    case (.tableOfContents(let contents), _):
                        let used = Int(contents.dataOffset - start)
                        toc.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[..<used]))
                        tocBytesHere = used
                        try begin(contents)
                    case (_, .parallel(let copy)):
                        try Self.route(event, copy)
                    default:
                        break
                    }
                }
            } catch let e as DataToolsError where tocBytesHere == nil && (e.code == .compressedArchive || e.code == .unsupportedArchive) {
                // pg_restore reads what the archive reader cannot: hand it everything.
                toc.append(contentsOf: bytes)
                try startPiped()
                return
            }
            guard let used = tocBytesHere else {
                toc.append(contentsOf: bytes)
                return
            }
            if case .piped(let tool) = mode, used < bytes.count {
                try tool.writeStdin(UnsafeRawBufferPointer(rebasing: bytes[used...]))
            }
        }
    }

    private func complete() throws {
        switch mode {
        case .readingTOC:
            _ = try counter.finish()  // throws: the archive ended inside its header or TOC
            throw DataToolsError(.malformedArchive, "pg_dump archive ended before its table of contents did")
        case .piped(let tool):
            tool.closeStdin()
            defer { onTool(0) }
            try tool.wait()
        case .parallel(let copy):
            let counted = try counter.finish()
            let copied = try copy.finish()
            try checkStopped()
            // What the server says it copied must be what the archive holds, table by table.
            for (t, rows) in zip(counted, copied) where t.rows != rows {
                throw DataToolsError(.database, "COPY into \(t.schema).\(t.table) copied \(rows) rows; the archive holds \(t.rows)")
            }
            // Large objects as the backup counted them (an archive with any is loaded by pg_restore, not here).
            loadedTables = counted + [.largeObjects(counter.largeObjects)]
            let tocFile = files[0]
            // Everything but the table data, in the TOC's order: sequence values, then the post-data.
            let listing = try run(["-l", tocFile], output: true)
            let rest = listing.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
                guard let id = line.split(separator: ";", maxSplits: 1).first.flatMap({ Int64($0) }) else { return true }
                return !tableDumpIDs.contains(id)
            }
            let listFile = tocFile + ".list"
            try write(Array(rest.joined(separator: "\n").utf8), to: listFile)
            try run(["--exit-on-error", "--no-owner", "--section=data", "--section=post-data", "-L", listFile, "-j", String(connections)] + tools.target + [tocFile])
        }
    }

    /// Stops whatever runs (any thread): pg_restore is killed, the COPYs are abandoned.
    func cancel() {
        let (tool, copy): (ToolProcess?, PGParallelCopy?) = lock.withLock {
            stopped = true
            return (self.tool, self.copy)
        }
        tool?.kill(SIGKILL)
        copy?.cancel()
    }

    /// Ends everything after a failure or a cancel and removes the files; call once, whatever happened.
    func close() {
        let (tool, copy): (ToolProcess?, PGParallelCopy?) = lock.withLock { (self.tool, self.copy) }
        if let tool {
            tool.kill(SIGKILL)
            tool.closeStdin()
            try? tool.wait()
        }
        if let copy {
            copy.cancel()
            _ = try? copy.finish()
        }
        for f in files { unlink(f) }
        files = []
    }

    // MARK: - Steps

    private static func route(_ event: PGCustomArchiveCounter.Event, _ copy: PGParallelCopy) throws {
        switch event {
        case .rows(let index, let bytes): try copy.rows(table: index, bytes)
        case .tableEnd(let index): try copy.endTable(index)
        case .tableOfContents: break
        }
    }

    /// The TOC is read: the schema is made and the data goes to the COPY connections, or everything to
    /// one pg_restore when the data is not all COPY text.
    private func begin(_ contents: PGCustomArchiveCounter.Contents) throws {
        guard connections > 1, contents.otherDataEntries == 0, !contents.tableData.isEmpty else {
            try startPiped()
            return
        }
        let tocFile = NSTemporaryDirectory() + "pg-restore-\(getpid())-\(UUID().uuidString).toc"
        files.append(tocFile)
        try write(toc, to: tocFile)
        files.append(tocFile + ".list")
        toc = []
        tableDumpIDs = Set(contents.tableData.map(\.dumpID))
        try run(["--exit-on-error", "--no-owner", "--section=pre-data"] + tools.target + [tocFile])
        let copy = PGParallelCopy(
            server: server, database: database, connections: connections,
            tables: contents.tableData.map { .init(statement: $0.copyStatement, name: "\($0.schema).\($0.table)") },
            session: contents.sessionStatements)
        let stopped = lock.withLock {
            self.copy = copy
            return self.stopped
        }
        mode = .parallel(copy)
        if stopped { copy.cancel() }
        try checkStopped()
    }

    private func startPiped() throws {
        let tool = ToolProcess(path: tools.pgRestore, arguments: ["--exit-on-error", "--no-owner"] + tools.target,
                               pipeStdout: false, pipeStdin: true, environment: tools.environment)
        try launch(tool)
        mode = .piped(tool)
        try toc.withUnsafeBytes { try tool.writeStdin($0) }
        toc = []
    }

    /// Runs pg_restore with `arguments` to its end; returns its output when asked for.
    @discardableResult
    private func run(_ arguments: [String], output: Bool = false) throws -> String {
        let tool = ToolProcess(path: tools.pgRestore, arguments: arguments, pipeStdout: output, pipeStdin: false, environment: tools.environment)
        try launch(tool)
        defer {
            lock.withLock { self.tool = nil }
            onTool(0)
        }
        var out: [UInt8] = []
        do {
            if output { try tool.readStdout { out.append(contentsOf: $0) } }
        } catch {
            tool.kill(SIGKILL)
            try? tool.wait()
            throw error
        }
        try tool.wait()
        return String(decoding: out, as: UTF8.self)
    }

    private func launch(_ tool: ToolProcess) throws {
        try checkStopped()
        try tool.start()
        let stopped = lock.withLock {
            self.tool = tool
            return self.stopped
        }
        if stopped { tool.kill(SIGKILL) }
        onTool(tool.pid)
    }

    private func checkStopped() throws {
        if lock.withLock({ stopped }) { throw CancellationError() }
    }

    /// Writes `bytes` to a new file only this user can read.
    private func write(_ bytes: [UInt8], to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]) else {
            throw DataToolsError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
