import Foundation
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Where a committed part's bytes are: a file of the upload's folder (the shared `assembly`, or the part's own
/// staged `data-*` file), the offset and length there, and the part's ETag (MD5 hex).
///
/// Stored as `rec-NNNNN` in the upload's folder, one line `<file> <offset> <length> <etag>`, written to a temp
/// file and renamed into place: committing a part is atomic and the last commit of a number wins.
/// Uploads staged by earlier gateways (`part-NNNNN` data files, ETag in an xattr) are still read.
struct PartRecord: Sendable, Equatable {
    /// A file name inside the upload's folder.
    var file: String
    var offset: Int
    var length: Int
    var etag: String

    /// The file all parts of the common size are written into, each at `(n - 1) * stride`.
    static let assemblyName = "assembly"
    /// Prefix of a part's own staged data file.
    static let dataPrefix = "data-"

    static func recordName(_ n: Int) -> String { String(format: "rec-%05d", n) }

    var inAssembly: Bool { file == Self.assemblyName }

    var encoded: String { "\(file) \(offset) \(length) \(etag)\n" }

    /// Parses a record's text; nil when it is not one (a torn or foreign file).
    init?(text: String) {
        let f = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        guard f.count == 4, let o = Int(f[1]), let l = Int(f[2]), o >= 0, l >= 0,
              f[0] == Self.assemblyName || f[0].hasPrefix(Self.dataPrefix), !f[0].contains("/") else { return nil }
        file = String(f[0]); offset = o; length = l; etag = String(f[3])
    }

    init(file: String, offset: Int, length: Int, etag: String) {
        self.file = file; self.offset = offset; self.length = length; self.etag = etag
    }

    /// The committed record of part `n` in `dir`, if any.
    static func load(dir: String, number n: Int) -> PartRecord? {
        guard let d = FileManager.default.contents(atPath: dir + "/" + recordName(n)) else { return nil }
        return PartRecord(text: String(decoding: d, as: UTF8.self))
    }

    /// Makes this the record of part `n` (fsynced, renamed over the previous one). Then removes the staged
    /// data file the previous record pointed to (never the assembly) and a legacy `part-NNNNN` file.
    func commit(dir: String, number n: Int) throws {
        let previous = Self.load(dir: dir, number: n)
        let tmp = dir + "/" + reservedPrefix + "tmp-rec-" + UUID().uuidString.lowercased()
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw S3Error("InternalError", 500, "cannot record part \(n) in \(dir): \(errnoText())") }
        let bytes = Array(encoded.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(tmp, dir + "/" + Self.recordName(n)) == 0 else {
            let why = errnoText()
            unlink(tmp)
            throw S3Error("InternalError", 500, "cannot record part \(n) in \(dir): \(why)")
        }
        fsyncDir(dir)
        if let previous, !previous.inAssembly, previous.file != file { unlink(dir + "/" + previous.file) }
        unlink(dir + "/" + FSStore.partName(n))
    }
}
