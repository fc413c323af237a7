import Foundation

/// What a service owns and wants backed up: PostgreSQL databases, search indices, and folders or files.
public struct OwnedData: Sendable, Equatable {
    /// PostgreSQL databases, dumped by the pg-sidecar to `pg_data/<database>.fc.zst`.
    public var databases: [String]
    /// Search indices, exported by the es-sidecar to `automate-elasticsearch-data/<service>/<backup-id>/`.
    public var indices: [String]
    /// Absolute paths (folders or files), each archived to `files/<name>.tar.zst`.
    public var paths: [OwnedPath]
    /// The whole PostgreSQL cluster, copied by the pg-sidecar to `pg_base/` (a base backup for
    /// point-in-time recovery).
    public var cluster = false

    public init(databases: [String] = [], indices: [String] = [], paths: [OwnedPath] = []) {
        self.databases = databases
        self.indices = indices
        self.paths = paths
    }

    /// Paths named by their last component (`/srv/data/profiles` → `profiles`), made unique with `-2`, `-3`.
    public init(databases: [String] = [], indices: [String] = [], paths: [String]) {
        var used: Set<String> = []
        var owned: [OwnedPath] = []
        for path in paths {
            let base = (path as NSString).lastPathComponent
            var name = base.isEmpty || base == "/" ? "root" : base
            var n = 2
            while used.contains(name) { name = "\(base)-\(n)"; n += 1 }
            used.insert(name)
            owned.append(OwnedPath(name: name, path: path))
        }
        self.init(databases: databases, indices: indices, paths: owned)
    }

    /// True when there is nothing to back up.
    public var isEmpty: Bool { databases.isEmpty && indices.isEmpty && paths.isEmpty && !cluster }
}

/// One declared folder or file, archived as `files/<name>.tar.zst`.
public struct OwnedPath: Sendable, Equatable {
    public var name: String
    /// Absolute.
    public var path: String

    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }
}
