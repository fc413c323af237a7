import DataTools
import Foundation
import XCTest

/// Which installed client tools go with a server: its own major's, else the oldest newer one; a server
/// newer than every installed major is refused naming both versions.
final class PGClientToolsTests: XCTestCase {
    func testToolsForTheServerMajor() throws {
        let root = NSTemporaryDirectory() + "pg-tools-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        for major in [13, 15] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(major)/bin", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: "\(root)/\(major)/bin/pg_dump", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        }
        try FileManager.default.createDirectory(atPath: "\(root)/14/bin", withIntermediateDirectories: true)  // no pg_dump: not installed
        XCTAssertEqual(PGClientTools.majors(root: root), [13, 15])
        XCTAssertEqual(try PGClientTools.binDirectory(forServer: 15, serverVersion: "15.4", root: root), "\(root)/15/bin")
        XCTAssertEqual(try PGClientTools.binDirectory(forServer: 14, serverVersion: "14.9", root: root), "\(root)/15/bin")
        XCTAssertThrowsError(try PGClientTools.binDirectory(forServer: 16, serverVersion: "16.2", root: root)) { error in
            XCTAssertEqual("\(error)".contains("the server runs PostgreSQL 16.2 but this machine's client tools are up to PostgreSQL 15 (\(root)/15/bin): install postgresql-client-16"), true, "\(error)")
        }
    }
}
