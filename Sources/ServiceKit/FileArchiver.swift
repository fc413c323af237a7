import ArtifactStorage
import BackupRepository
import Crypto
import Foundation
import DataTools
import Operations
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Archives a declared folder or file with GNU tar (owners, modes, symlinks, numeric ids) into the
/// repository — plain: compressed with zstd on the way into a multipart upload, hashing what is uploaded;
/// chunked: into the chunk store — and brings an archive back (chunked, zstd or gzip) into a temporary
/// folder beside the target, swapping it in only after its checks passed. Blocking: run it as a `BlockingPool` job and pass the job, so that cancelling the
/// awaiting task kills tar's process group and aborts the upload.
public struct FileArchiver: Sendable {
    public var partSize: Int = 8 << 20
    public var zstdLevel: Int32 = 1

    /// `partSize` and `zstdLevel`: a plain repository's multipart parts and compression.
    public init(partSize: Int = 8 << 20, zstdLevel: Int32 = 1) {
        self.partSize = partSize
        self.zstdLevel = zstdLevel
    }

    /// What an archive holds.
    public struct Result: Sendable, Equatable {
        /// Where it went: the object (plain, `<key>.zst`) or its chunks.
        public var stored: StoredArtifact
        /// Entries tar wrote (folders, files, links).
        public var entries: UInt64
        public var size: UInt64 { stored.size }
        public var sha256: String { stored.sha256 }
        /// Bytes read from disk, before compression.
        public var rawBytes: UInt64 { stored.rawBytes }
    }

    /// The tar program.
    public static let tarPath: String = ["/usr/bin/tar", "/bin/tar"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/bin/tar"

    /// Archives `path` as the artifact `key` (`<id>/<service>/files/<name>.tar`) of `session`: the object
    /// `<key>.zst` in a plain repository, chunks in a chunked one. A path that does not exist gives an
    /// empty archive (0 entries), so that a restore of it leaves no stale folder behind. `progress` gets
    /// the sink as bytes go by (every MiB, see `ByteCountGate`, and at the end). Cancelling `job` kills
    /// tar and aborts the upload (nothing appears under `key`).
    public func archive(path: String, key: String, session: ArtifactWriteSession, progress: (ArtifactSink) -> Void = { _ in },
                        job: BlockingJob? = nil) throws -> Result {
        let parent = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let index = NSTemporaryDirectory() + "automate-tar-index-\(getpid())-\(UUID().uuidString)"
        defer { unlink(index) }
        var info = stat()
        let exists = lstat(path, &info) == 0
        let members = exists ? [base] : ["--files-from=/dev/null"]
        let tool = ToolProcess(
            path: Self.tarPath,
            arguments: ["--create", "--file=-", "--directory=\(parent.isEmpty ? "/" : parent)", "--numeric-owner",
                        "--verbose", "--index-file=\(index)", "--"] + members,
            pipeStdout: true, pipeStdin: false)
        // Chunked: cut at the members' boundaries, so a changed file's chunks are its own.
        let sink = try session.sink(key: key, plainSuffix: ".zst", compressionLevel: zstdLevel, partSize: partSize, layout: .tar)
        let stored: StoredArtifact
        do {
            try Self.whileCancellable(job, kill: tool) {
            try job?.checkCancellation()
            try tool.start()
            do {
                var gate = ByteCountGate()
                var raw: Int64 = 0
                try tool.readStdout { chunk in
                    if job?.isCancelled == true { throw KitError(.cancelled, "archiving \(path) was cancelled") }
                    raw += Int64(chunk.count)
                    try sink.write(chunk)
                    if gate.passes(raw) { progress(sink) }
                }
                progress(sink)
            } catch {
                tool.kill(SIGKILL)
                try? tool.wait()
                throw error
            }
            try tool.wait()
            }
            if job?.isCancelled == true { throw KitError(.cancelled, "archiving \(path) was cancelled") }
            stored = try sink.finish()
        } catch {
            sink.abort()
            if job?.isCancelled == true { throw KitError(.cancelled, "archiving \(path) was cancelled") }
            throw error
        }
        let entries = (try? String(contentsOfFile: index, encoding: .utf8))?.split(separator: "\n").count ?? 0
        return Result(stored: stored, entries: UInt64(entries))
    }

    /// Restores the archive at `key` over `path`: extracts into a temporary folder beside it, checks the
    /// archive's size and sha256 (chunked: every chunk, and the whole against its record) and entry count
    /// when given, then swaps the result in. On any failure the target is left as it was. `gzip` selects
    /// `.tar.gz` archives of older backups; an `expected` with chunks is read from the chunk store.
    public func restore(key: String, to path: String, expected: ArtifactRecord, tag: String, gzip: Bool, reader: ArtifactReader,
                        progress: @escaping (UInt64) -> Void = { _ in }, job: BlockingJob? = nil) throws -> UInt64 {
        let fm = FileManager.default
        let parent = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let scratch = parent + "/.automate-restore-\(tag)-\(base)"
        let old = parent + "/.automate-old-\(tag)-\(base)"
        try? fm.removeItem(atPath: scratch)
        try fm.createDirectory(atPath: scratch, withIntermediateDirectories: false)
        defer { try? fm.removeItem(atPath: scratch) }
        let index = NSTemporaryDirectory() + "automate-tar-index-\(getpid())-\(UUID().uuidString)"
        defer { unlink(index) }
        var args = ["--extract", "--file=-", "--directory=\(scratch)", "--numeric-owner", "--preserve-permissions",
                    "--verbose", "--index-file=\(index)"]
        if gzip { args.append("--gzip") }
        if geteuid() == 0 { args.append("--same-owner") }
        let tool = ToolProcess(path: Self.tarPath, arguments: args, pipeStdout: false, pipeStdin: true)
        var hasher = SHA256()
        var size: UInt64 = 0
        try Self.whileCancellable(job, kill: tool) {
        try job?.checkCancellation()
        try tool.start()
        do {
            let zstd: ZstdDecompressor? = gzip || expected.chunks != nil ? nil : try ZstdDecompressor { chunk in try tool.writeStdin(chunk) }
            var gate = ByteCountGate()
            try reader.read(key: key, chunks: expected.chunks) { chunk in
                if job?.isCancelled == true { throw KitError(.cancelled, "restoring \(key) into \(path) was cancelled") }
                if expected.chunks == nil { hasher.update(bufferPointer: chunk) }  // chunks are checked as they are read
                size += UInt64(chunk.count)
                if gate.passes(Int64(size)) { progress(size) }
                if let zstd { try zstd.decompress(chunk) } else { try tool.writeStdin(chunk) }
            }
            try zstd?.finish()
            progress(size)
            tool.closeStdin()
            try tool.wait()
        } catch {
            tool.closeStdin()
            tool.kill(SIGKILL)
            try? tool.wait()
            if job?.isCancelled == true { throw KitError(.cancelled, "restoring \(key) into \(path) was cancelled; nothing was changed there") }
            throw KitError(.failed, "restoring \(key) into \(path): \(error)")
        }
        }
        let digest = Checksum.hex(hasher.finalize())
        // Chunks were checked as they were read (each, then the whole against its record).
        guard expected.chunks != nil || (size == expected.size && digest == expected.sha256) else {
            throw KitError(.failed, 
                "\(key): size \(size) sha256 \(digest.prefix(12))…, metadata.json says size \(expected.size) sha256 \(expected.sha256.prefix(12))…; nothing was changed at \(path)")
        }
        let entries = UInt64((try? String(contentsOfFile: index, encoding: .utf8))?.split(separator: "\n").count ?? 0)
        if let want = expected.items, want != entries {
            throw KitError(.failed, "\(key) held \(entries) entries, metadata.json says \(want); nothing was changed at \(path)")
        }
        // Swap: the old copy moves aside, the restored one takes its place, then the old one goes.
        try? fm.removeItem(atPath: old)
        var info = stat()
        let hadOld = lstat(path, &info) == 0
        if hadOld { try fm.moveItem(atPath: path, toPath: old) }
        if lstat(scratch + "/" + base, &info) == 0 {
            do { try fm.moveItem(atPath: scratch + "/" + base, toPath: path) } catch {
                if hadOld { try? fm.moveItem(atPath: old, toPath: path) }
                throw error
            }
        }
        if hadOld { try? fm.removeItem(atPath: old) }
        return entries
    }

    /// Runs `body` with "kill `tool`'s process group" as `job`'s cancel action (no job: just runs it).
    private static func whileCancellable<T>(_ job: BlockingJob?, kill tool: ToolProcess, _ body: () throws -> T) throws -> T {
        guard let job else { return try body() }
        return try job.withCancelAction({ tool.kill(SIGKILL) }, body)
    }
}
