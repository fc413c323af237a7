import Foundation
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Decides which part uploads are written in place, into their upload's assembly file, and keeps them apart
/// from each other and from CompleteMultipartUpload.
///
/// The first part upload declaring at least 5 MiB fixes the upload's stride (stored as `stride` in the upload's
/// folder, first writer wins, so it survives restarts). A part declaring exactly the stride goes in place at
/// `(n - 1) * stride` when no part `n` is committed or being written in place and no completion is under way;
/// every other upload is staged in its own file. A failed in-place write thus only ever spoils a slot no
/// record points to. One per `FSStore` (keys are upload folders, absolute paths); what must outlive the
/// process (stride, records) is on disk.
final class AssemblyRegistry: @unchecked Sendable {
    // `uploads` is only touched with `lock` held.
    private let lock = NSLock()
    private var uploads: [String: Upload] = [:]

    private struct Upload {
        var stride: Int?
        var writing: Set<Int> = []
        var completing = false
        /// The writes into the assembly, one at a time.
        var writes = JobChain()
    }

    static let minimumStride = 5 << 20
    static let strideName = "stride"

    /// The upload's stride, if one was fixed.
    func stride(dir: String) -> Int? {
        if let s = lock.withLock({ uploads[dir]?.stride }) { return s }
        guard let d = FileManager.default.contents(atPath: dir + "/" + Self.strideName),
              let s = Int(String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        lock.withLock { uploads[dir, default: Upload()].stride = s }
        return s
    }

    /// Fixes the stride to `length` unless one is already fixed; returns the upload's stride.
    private func fixStride(dir: String, length: Int) throws -> Int {
        if let s = stride(dir: dir) { return s }
        let tmp = dir + "/" + reservedPrefix + "tmp-stride-" + UUID().uuidString.lowercased()
        guard FileManager.default.createFile(atPath: tmp, contents: Data("\(length)\n".utf8)) else {
            if statPath(dir) == nil { throw S3Error.noSuchUpload }
            throw S3Error("InternalError", 500, "cannot write \(tmp): check that the bucket folder is writable")
        }
        let linked = link(tmp, dir + "/" + Self.strideName) == 0
        unlink(tmp)
        if linked { fsyncDir(dir) }
        guard let s = stride(dir: dir) else { throw S3Error("InternalError", 500, "cannot read \(dir)/\(Self.strideName)") }
        return s
    }

    /// Reserves part `n` for an in-place write of `declared` bytes; returns its offset in the assembly, or nil
    /// when the part must be staged. A reservation ends with `release`.
    func reserve(dir: String, number n: Int, declared: Int?) throws -> Int? {
        guard let declared, declared >= Self.minimumStride else { return nil }
        let s = try fixStride(dir: dir, length: declared)
        guard declared == s else { return nil }
        return lock.withLock { () -> Int? in
            var u = uploads[dir, default: Upload()]
            guard !u.completing, !u.writing.contains(n), PartRecord.load(dir: dir, number: n) == nil,
                  statPath(dir + "/" + FSStore.partName(n)) == nil else { return nil }
            u.writing.insert(n)
            uploads[dir] = u
            return (n - 1) * s
        }
    }

    /// The chain the in-place writes into the upload's assembly queue on.
    func writes(dir: String) -> JobChain {
        lock.withLock {
            if let chain = uploads[dir]?.writes { return chain }
            let u = Upload()
            uploads[dir] = u
            return u.writes
        }
    }

    func release(dir: String, number n: Int) {
        lock.withLock { _ = uploads[dir]?.writing.remove(n) }
    }

    /// Starts a completion that may move the assembly: true (and later in-place writes are refused) when no
    /// in-place write is running; false when one is (the completion must copy).
    func beginCompleting(dir: String) -> Bool {
        lock.withLock {
            var u = uploads[dir, default: Upload()]
            guard u.writing.isEmpty, !u.completing else { return false }
            u.completing = true
            uploads[dir] = u
            return true
        }
    }

    /// Ends a completion that did not move the assembly: in-place writes may resume.
    func endCompleting(dir: String) {
        lock.withLock { uploads[dir]?.completing = false }
    }

    /// Forgets an upload (completed or aborted, its folder removed).
    func forget(dir: String) {
        lock.withLock { uploads[dir] = nil }
    }
}
