import Foundation

/// The PostgreSQL client tools installed on this machine (Debian's `/usr/lib/postgresql/<major>/bin`).
public enum PGClientTools {
    /// The majors under `root` that have `pg_dump`, ascending.
    public static func majors(root: String = "/usr/lib/postgresql") -> [Int] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return entries.compactMap(Int.init).filter { FileManager.default.isExecutableFile(atPath: "\(root)/\($0)/bin/pg_dump") }.sorted()
    }

    /// The newest major with `pg_dump`, nil when there is none.
    public static func newestMajor(root: String = "/usr/lib/postgresql") -> Int? { majors(root: root).last }

    /// The folder of the tools that work with a server of `serverMajor`: its own major's, else the
    /// oldest newer one (pg_dump and pg_restore read and write older servers, never newer ones).
    /// - Throws: ``DataToolsError`` naming both versions when every installed major is older.
    public static func binDirectory(forServer serverMajor: Int, serverVersion: String, root: String = "/usr/lib/postgresql") throws -> String {
        let installed = majors(root: root)
        guard let major = installed.first(where: { $0 >= serverMajor }) else {
            let have = installed.isEmpty ? "none in \(root)" : "up to PostgreSQL \(installed.last!) (\(root)/\(installed.last!)/bin)"
            throw DataToolsError(.toolMissing, "the server runs PostgreSQL \(serverVersion) but this machine's client tools are \(have): install postgresql-client-\(serverMajor)")
        }
        return "\(root)/\(major)/bin"
    }
}
