import AutomateRPC
import Foundation
import XCTest
@testable import PGSidecar
#if canImport(Glibc)
import Glibc
#endif

/// The hand-off folder's archive direction: the server's user may write the folder, so the sidecar reads
/// only a plain `.archive-*` file of the caller's own with one link, and removes what it read.
final class WALHandoffTests: XCTestCase {
    var folder = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "wal-handoff-\(UUID().uuidString)"
        _ = try WALHandoff(folder: folder)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: folder)
    }

    func place(_ name: String, _ text: String) -> String {
        let path = folder + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func code(_ body: () throws -> Data) -> RPCStatusCode? {
        do {
            _ = try body()
            return nil
        } catch let e as RPCError {
            return e.code
        } catch {
            return .unknown
        }
    }

    func testTakesAPlainCopyOfTheCallersOwnAndRemovesIt() throws {
        let handoff = try WALHandoff(folder: folder)
        let path = place(".archive-000000010000000000000001-42", "segment bytes")
        XCTAssertEqual(try handoff.takeArchiveCopy(named: ".archive-000000010000000000000001-42", owner: getuid()), Data("segment bytes".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        // Trusted callers: any owner.
        _ = place(".archive-000000010000000000000002-42", "more")
        XCTAssertEqual(try handoff.takeArchiveCopy(named: ".archive-000000010000000000000002-42", owner: nil), Data("more".utf8))
    }

    func testRefusesWhatIsNotAPlainCopyOfTheCallers() throws {
        let handoff = try WALHandoff(folder: folder)
        let secret = NSTemporaryDirectory() + "secret-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: secret, contents: Data("not WAL".utf8))
        defer { unlink(secret) }
        // Names outside the folder or without the prefix.
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: "../" + (secret as NSString).lastPathComponent, owner: nil) }, .invalidArgument)
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: "000000010000000000000001", owner: nil) }, .invalidArgument)
        // A symbolic link to a file the sidecar could read.
        XCTAssertEqual(symlink(secret, folder + "/.archive-link"), 0)
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: ".archive-link", owner: nil) }, .failedPrecondition)
        // A hard link to it.
        XCTAssertEqual(link(secret, folder + "/.archive-hard"), 0)
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: ".archive-hard", owner: nil) }, .permissionDenied)
        XCTAssertEqual(try String(contentsOfFile: secret, encoding: .utf8), "not WAL")
        // Another user's file.
        _ = place(".archive-foreign", "x")
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: ".archive-foreign", owner: getuid() + 1) }, .permissionDenied)
        // A folder, and a name that is not there.
        XCTAssertEqual(mkdir(folder + "/.archive-dir", 0o700), 0)
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: ".archive-dir", owner: nil) }, .permissionDenied)
        XCTAssertEqual(code { try handoff.takeArchiveCopy(named: ".archive-missing", owner: nil) }, .failedPrecondition)
    }
}
