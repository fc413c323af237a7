import Foundation

/// Saves the stack's in-memory search engine (osmem-server) to a local folder with the export code, and
/// loads it back. The save is a folder of `<index>.ndjson` (bulk format, so `osmem-server -seed <dir>` can
/// read it too, with dynamic mappings) and `manifest.json` (settings, mappings, counts, sha256). Files are
/// written to a temp name and renamed, and the manifest last, so a crash mid-save keeps the previous
/// manifest; a stale `.ndjson` that no longer matches it is refused at load (sha256).
public struct LocalSearchSave: Sendable {
    public var engine: SearchEngine
    public var directory: String

    public init(engine: SearchEngine, directory: String) {
        self.engine = engine
        self.directory = directory
    }

    /// Exports every non-hidden index; returns how many.
    @discardableResult
    public func save() throws -> Int {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Write into a fresh generation folder, then swap the `current` symlink: the previous save stays
        // whole until the new one is complete.
        let generation = "save-\(Int(Date().timeIntervalSince1970 * 1000))"
        let genDir = directory + "/" + generation
        try FileManager.default.createDirectory(atPath: genDir, withIntermediateDirectories: true)
        let indices = try engine.listIndices()
        do {
            _ = try Exporter(engine: engine).export(indices: indices, to: DirectoryExportStore(directory: genDir), meta: ["engine": engine.url])
        } catch {
            try? FileManager.default.removeItem(atPath: genDir)
            throw error
        }
        let link = directory + "/current", tmpLink = directory + "/current.tmp"
        unlink(tmpLink)
        guard symlink(generation, tmpLink) == 0, rename(tmpLink, link) == 0 else {
            throw SearchError(status: 0, message: "cannot switch \(link): \(String(cString: strerror(errno)))")
        }
        // Older generations go once the new one is current.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("save-") && name != generation {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
        return indices.count
    }

    public var currentDirectory: String? {
        let link = directory + "/current"
        return FileManager.default.fileExists(atPath: link + "/manifest.json") ? link : nil
    }

    /// Loads the current save (every index verified first); returns how many indices.
    @discardableResult
    public func load(replace: Bool) throws -> Int {
        guard let dir = currentDirectory else { return 0 }
        let store = DirectoryExportStore(directory: dir)
        let exporter = Exporter(engine: engine)
        guard let m = try exporter.readManifest(from: store) else { return 0 }
        for i in m.indices { try exporter.verify(i, in: store) }
        for i in m.indices {
            try exporter.create(i, replace: replace)
            try exporter.load(i, from: store)
        }
        return m.indices.count
    }

    /// Loads only when the engine has no index (a fresh start of the in-memory engine).
    public func loadIfEngineEmpty() throws -> Int {
        guard try engine.listIndices().isEmpty else { return 0 }
        return try load(replace: false)
    }

    /// A hidden marker index tells a restarted (empty, in-memory) engine from one that was only emptied
    /// by its users: when the marker is missing, the engine is new, so the save is loaded (if the engine
    /// has no index yet) and the marker made. Returns how many indices were loaded.
    public static let marker = ".automate-search-save"

    public func loadIfEngineRestarted() throws -> Int {
        if try engine.indexExists(Self.marker) { return 0 }
        let n = try loadIfEngineEmpty()
        try engine.json("PUT", "/" + Self.marker, body: ["settings": ["number_of_shards": 1, "number_of_replicas": 0]], allow: [400])
        return n
    }
}
