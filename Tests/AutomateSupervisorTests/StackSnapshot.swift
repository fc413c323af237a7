import AutomateSupervisor
import Foundation

/// What a stack holds, read with plain tools so that two stacks can be compared: every table's ordered
/// contents (md5 of COPY), every search document, every declared file with its bytes and mode.
struct StackSnapshot: Equatable, CustomStringConvertible {
    var tables: [String: String] = [:]
    var documents: [String] = []
    var files: [String: String] = [:]

    var description: String { "tables \(tables)\ndocuments \(documents.count)\nfiles \(files.count)" }

    /// What differs from `expected`, one line per table, document or file (a failure message that names the
    /// difference instead of two long dumps).
    func differences(from expected: StackSnapshot) -> String {
        var lines: [String] = []
        func compare(_ kind: String, _ mine: [String: String], _ theirs: [String: String]) {
            for key in Set(mine.keys).union(theirs.keys).sorted() where mine[key] != theirs[key] {
                lines.append("\(kind) \(key): expected \(theirs[key] ?? "nothing"), found \(mine[key] ?? "nothing")")
            }
        }
        compare("table", tables, expected.tables)
        compare("file", files, expected.files)
        let (mine, theirs) = (Set(documents), Set(expected.documents))
        for d in theirs.subtracting(mine).sorted() { lines.append("document missing: \(d.prefix(200))") }
        for d in mine.subtracting(theirs).sorted() { lines.append("document unexpected: \(d.prefix(200))") }
        if documents.count != expected.documents.count { lines.append("documents: expected \(expected.documents.count), found \(documents.count)") }
        return lines.isEmpty ? "no differences" : lines.prefix(40).joined(separator: "\n")
    }

    static let databases = ["teams_service": ["teams", "members"], "compliance_service": ["reports"], "notifications_service": ["outbox"]]

    static func take(_ stack: TestStack, searchPort: String) async throws -> StackSnapshot {
        var snapshot = StackSnapshot()
        for (database, tables) in databases {
            for table in tables {
                let r = try await stack.shell("automate psql \(database) -- -AtXq -c 'COPY (SELECT * FROM \(table) ORDER BY 1, 2) TO STDOUT' | md5sum")
                guard r.succeeded else { throw TestFailure("COPY \(database).\(table): \(r.error)") }
                let count = try await stack.shell("automate psql \(database) -- -AtXq -c 'SELECT count(*) FROM \(table)'")
                snapshot.tables["\(database).\(table)"] = "\(count.output.trimmingCharacters(in: .whitespacesAndNewlines)) rows, md5 \(r.output.prefix(32))"
            }
        }
        let docs = try await stack.shell("curl -fsS 'http://127.0.0.1:\(searchPort)/compliance-reports/_search?size=1000' -H 'Content-Type: application/json' -d '{\"query\":{\"match_all\":{}}}'")
        guard docs.succeeded, let json = try JSONSerialization.jsonObject(with: Data(docs.output.utf8)) as? [String: Any],
              let hits = (json["hits"] as? [String: Any])?["hits"] as? [[String: Any]] else {
            throw TestFailure("search: \(docs.output)\(docs.error)")
        }
        snapshot.documents = hits.map { hit in
            let source = (try? JSONSerialization.data(withJSONObject: hit["_source"] ?? [:], options: [.sortedKeys])) ?? Data()
            return "\(hit["_id"] ?? "")=\(String(decoding: source, as: UTF8.self))"
        }.sorted()
        for folder in ["compliance-service/profiles", "notifications-service/config"] {
            let root = stack.home.dataDirectory + "/" + folder
            let walker = FileManager.default.enumerator(atPath: root)
            while let relative = walker?.nextObject() as? String {
                var info = stat()
                guard lstat(root + "/" + relative, &info) == 0 else { continue }
                let mode = String(info.st_mode & 0o7777, radix: 8)
                switch info.st_mode & S_IFMT {
                case S_IFREG:
                    let sum = try await stack.shell("sha256sum '\(root)/\(relative)'")
                    snapshot.files["\(folder)/\(relative)"] = "file \(mode) \(sum.output.prefix(64))"
                case S_IFLNK:
                    snapshot.files["\(folder)/\(relative)"] = "link -> \((try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + relative)) ?? "?")"
                default:
                    snapshot.files["\(folder)/\(relative)"] = "dir \(mode)"
                }
            }
        }
        return snapshot
    }
}

/// `automate <arguments>` running in the background, its output readable line by line as it comes.
final class LiveCommand: @unchecked Sendable {
    private let child: ChildProcessHandle
    private let reader: FileHandle
    private let lock = NSLock()
    private var output = ""
    private var waiters: [(String, CheckedContinuation<String, Never>)] = []
    private var finished = false

    typealias ChildProcessHandle = AutomateSupervisor.ChildProcess

    convenience init(_ stack: TestStack, _ arguments: [String]) throws {
        var environment = ProcessInfo.processInfo.environment
        environment["AUTOMATE_HOME"] = stack.home.path
        environment["AUTOMATE_SERVICES_DIR"] = stack.servicesDirectory
        environment["AUTOMATE_HOOKS_DIR"] = stack.hooksDirectory
        try self.init(executable: TestStack.binDirectory + "/automate", arguments, environment: environment)
    }

    init(executable: String, _ arguments: [String], environment: [String: String]) throws {
        let pipe = Pipe()
        var options = ChildProcessHandle.Options(executable: executable, arguments: arguments, environment: environment)
        options.standardOutput = pipe.fileHandleForWriting.fileDescriptor
        options.standardError = pipe.fileHandleForWriting.fileDescriptor
        options.deathSignal = 0
        child = try ChildProcessHandle.spawn(options)
        try pipe.fileHandleForWriting.close()
        reader = pipe.fileHandleForReading
        let thread = Thread { [self] in
            while true {
                let chunk = reader.availableData
                lock.lock()
                if chunk.isEmpty { finished = true } else { output += String(decoding: chunk, as: UTF8.self) }
                let ready = waiters.filter { finished || output.contains($0.0) }
                waiters.removeAll { w in ready.contains { $0.0 == w.0 } }
                let text = output
                lock.unlock()
                for (_, c) in ready { c.resume(returning: text) }
                if chunk.isEmpty { return }
            }
        }
        thread.start()
    }

    /// Waits until the output contains `text` (or the command ended); returns the output so far.
    func waitFor(_ text: String) async -> String {
        await withCheckedContinuation { c in
            lock.lock()
            if finished || output.contains(text) {
                let o = output
                lock.unlock()
                c.resume(returning: o)
            } else {
                waiters.append((text, c))
                lock.unlock()
            }
        }
    }

    /// Its pid.
    var pid: pid_t { child.pid }

    /// Waits for the command to end; its exit status and whole output.
    func finish() async -> (AutomateSupervisor.ExitStatus, String) {
        let status = await child.waitForExit()
        child.forget()
        let text = await waitFor("\u{0}never\u{0}")
        return (status, text)
    }
}
