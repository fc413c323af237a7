import Foundation
import XCTest
@testable import PGSidecar

/// The recovery read-ahead: a segment's request reads the next three; those requests are answered from
/// them; a read-ahead that failed is not an answer; names that are not segments, and other clusters, are
/// read as asked.
final class WALPrefetchTests: XCTestCase {
    final class Calls: @unchecked Sendable {
        private let lock = NSLock()
        private var names: [String] = []
        func add(_ name: String) { lock.withLock { names.append(name) } }
        var all: [String] { lock.withLock { names } }
        func count(_ name: String) -> Int { all.filter { $0 == name }.count }
    }

    func testReadsAheadAndAnswersFromIt() throws {
        let prefetch = WALPrefetch()
        let calls = Calls()
        // The archive ends at ...0105: later names are not found.
        let fetch: @Sendable (String, String) throws -> FetchedWAL = { name, cluster in
            calls.add(cluster + "/" + name)
            guard name <= "000000010000000100000005" || !name.hasPrefix("00000001") else { throw NSError(domain: "not found", code: 404) }
            return .bytes(Array("\(cluster)/\(name)".utf8))
        }
        XCTAssertEqual(try prefetch.get(name: "0000000100000000000000FF", cluster: "7", fetch: fetch), .bytes(Array("7/0000000100000000000000FF".utf8)))
        // The next three, across the log boundary (...00FF is followed by ...0100000000).
        for next in ["000000010000000100000000", "000000010000000100000001", "000000010000000100000002"] {
            XCTAssertEqual(try prefetch.get(name: next, cluster: "7", fetch: fetch), .bytes(Array("7/\(next)".utf8)))
            XCTAssertEqual(calls.count("7/" + next), 1, "\(next) read once, ahead: \(calls.all)")
        }
        XCTAssertLessThanOrEqual(prefetch.held, WALPrefetch.depth)
        XCTAssertTrue(prefetch.counts == (4, 3), "\(prefetch.counts)")
        // Past the end: the read-ahead failed, the request reads again and gets its own failure.
        XCTAssertEqual(try prefetch.get(name: "000000010000000100000005", cluster: "7", fetch: fetch).size, "7/000000010000000100000005".utf8.count)
        XCTAssertThrowsError(try prefetch.get(name: "000000010000000100000006", cluster: "7", fetch: fetch))
        XCTAssertEqual(calls.count("7/000000010000000100000006"), 2, "read ahead, then again on request: \(calls.all)")
        // A history file is read as asked, with no read-ahead; another cluster's segment is its own.
        // (Read-aheads of ...07 to ...09 may still be running: count the names, not all calls.)
        XCTAssertEqual(try prefetch.get(name: "00000002.history", cluster: "7", fetch: fetch), .bytes(Array("7/00000002.history".utf8)))
        XCTAssertEqual(calls.count("7/00000002.history"), 1)
        XCTAssertFalse(calls.all.contains { $0.hasPrefix("7/00000002") && $0 != "7/00000002.history" }, "\(calls.all)")
        XCTAssertEqual(try prefetch.get(name: "000000010000000100000001", cluster: "8", fetch: fetch), .bytes(Array("8/000000010000000100000001".utf8)))
        XCTAssertEqual(calls.count("8/000000010000000100000001"), 1)
    }

    /// With the hand-off folder: read-aheads are files there; the one asked for is taken (read and removed),
    /// the ones a jump leaves behind are removed, and a file that fails its check never appears.
    func testHandOffFilesAreTakenOrRemoved() throws {
        let folder = NSTemporaryDirectory() + "wal-handoff-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let handoff = try WALHandoff(folder: folder)
        let prefetch = WALPrefetch()
        let fetch: @Sendable (String, String) throws -> FetchedWAL = { name, cluster in
            try handoff.write(name: name, cluster: cluster) { write in
                try Array("\(cluster)/\(name)".utf8).withUnsafeBytes(write)
                if name.hasSuffix("9") { throw NSError(domain: "sha256 differs", code: 1) }
            }
        }
        func files() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted() }
        let first = try prefetch.get(name: "000000010000000000000001", cluster: "7", fetch: fetch)
        guard case .handoff(let path, let size) = first else { return XCTFail("\(first)") }
        XCTAssertEqual(size, 26)
        XCTAssertEqual(try first.takeBytes(), Array("7/000000010000000000000001".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        // A jump: 02-04 are dropped (removed once their reads end), 21-23 are read ahead.
        _ = try prefetch.get(name: "000000010000000000000020", cluster: "7", fetch: fetch).takeBytes()
        let expected = (21...23).map { "7-0000000100000000000000\($0)-" }
        let deadline = Date() + 10
        while files().map({ String($0.prefix(expected[0].count)) }) != expected && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(files().map { String($0.prefix(expected[0].count)) }, expected, "\(files())")
        // A file that fails its check leaves nothing behind.
        XCTAssertThrowsError(try handoff.write(name: "000000010000000000000029", cluster: "7") { write in
            try Array("x".utf8).withUnsafeBytes(write)
            throw NSError(domain: "sha256 differs", code: 1)
        })
        XCTAssertEqual(files().count, 3, "\(files())")
        // A new start of the sidecar empties the folder.
        _ = try WALHandoff(folder: folder)
        XCTAssertEqual(files(), [])
    }
}
