import AutomateRPC
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One WAL file read back from the archive and checked against its record: its bytes, or a file of the
/// hand-off folder (``WALHandoff``) holding them, which the caller takes (copies, then removes).
enum FetchedWAL: Sendable, Equatable {
    case bytes([UInt8])
    case handoff(path: String, size: Int)

    /// Its size in bytes.
    var size: Int {
        switch self {
        case .bytes(let b): b.count
        case .handoff(_, let size): size
        }
    }

    /// The bytes, read from the hand-off file (which is then removed) when they are there.
    func takeBytes() throws -> [UInt8] {
        switch self {
        case .bytes(let b):
            return b
        case .handoff(let path, let size):
            defer { unlink(path) }
            guard let data = FileManager.default.contents(atPath: path), data.count == size else {
                throw RPCError(.internal, "cannot read the hand-off file \(path) back (\(size) bytes expected): \(String(cString: strerror(errno)))")
            }
            return Array(data)
        }
    }

    /// Drops what nobody will take: removes the hand-off file.
    func discard() {
        if case .handoff(let path, _) = self { unlink(path) }
    }
}
