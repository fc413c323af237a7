import Foundation
import Testing

/// `automate backup repository` and `automate backup key` on a folder repository, through the real CLI.
@Suite("Repository format and keys (CLI)")
struct RepositoryKeyCLITests {
    let home: String

    init() {
        home = NSTemporaryDirectory() + "repo-keys-home-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }

    func automate(_ arguments: [String], passphrase: String? = nil, newPassphrase: String? = nil, home: String? = nil) async throws -> CommandResult {
        var environment = ProcessInfo.processInfo.environment
        environment["AUTOMATE_HOME"] = home ?? self.home
        environment["AUTOMATE_BACKUP_PASSPHRASE"] = passphrase
        environment["AUTOMATE_BACKUP_NEW_PASSPHRASE"] = newPassphrase
        return try await CommandResult.run(TestStack.binDirectory + "/automate", arguments, environment: environment)
    }

    @Test("init records the format; keys are added and removed; a wrong or missing passphrase is a clear error")
    func keys() async throws {
        let stack = try TestStack(name: "repo-keys")
        defer { Task { await stack.tearDown() } }
        let repository = stack.root + "/repository"
        try FileManager.default.createDirectory(atPath: repository, withIntermediateDirectories: true)

        defer { try? FileManager.default.removeItem(atPath: home) }
        // Without a passphrase of the operator's, the secrets helper makes the home's; export prints it.
        let helped = stack.root + "/helped"
        try FileManager.default.createDirectory(atPath: helped, withIntermediateDirectories: true)
        let byHelper = try await automate(["backup", "repository", "init", helped])
        try #require(byHelper.succeeded, "\(byHelper.output)\(byHelper.error)")
        let keyFile = home + "/secrets/backup-repository.passphrase"
        var info = stat()
        #expect(stat(keyFile, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let stored = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .newlines)
        #expect(stored.count == 64)
        let export = try await automate(["backup", "key", "export"])
        #expect(export.output == stored + "\n", "\(export.output)\(export.error)")
        #expect(try await automate(["backup", "key", "list", helped]).succeeded, "the home's passphrase opens it")
        let elsewhere = NSTemporaryDirectory() + "repo-keys-other-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        let missing = try await automate(["backup", "key", "list", helped], home: elsewhere)
        #expect(missing.status == .exited(2) && missing.error.contains("set AUTOMATE_BACKUP_PASSPHRASE"), "\(missing.error)")
        let noExport = try await automate(["backup", "key", "export"], home: elsewhere)
        #expect(noExport.status == .exited(2) && noExport.error.contains("does not exist"), "\(noExport.error)")

        let made = try await automate(["backup", "repository", "init", repository], passphrase: "correct horse")
        try #require(made.succeeded, "\(made.output)\(made.error)")
        #expect(made.output.contains("Made chunked repository \(repository)"))
        let record = try String(contentsOfFile: repository + "/repository.json", encoding: .utf8)
        #expect(record == #"{"chunks":"chunks\/","format":"chunked"}"#, "\(record)")
        #expect(FileManager.default.fileExists(atPath: repository + "/chunks/config"))
        let again = try await automate(["backup", "repository", "init", repository], passphrase: "correct horse")
        #expect(again.status == .exited(2) && again.error.contains("already a chunked repository"), "\(again.error)")

        let wrong = try await automate(["backup", "key", "list", repository], passphrase: "wrong")
        #expect(!wrong.succeeded && wrong.error.contains("opens with this passphrase"), "\(wrong.error)")
        let added = try await automate(["backup", "key", "add", repository], passphrase: "correct horse", newPassphrase: "battery staple")
        try #require(added.succeeded, "\(added.error)")
        let list = try await automate(["backup", "key", "list", repository], passphrase: "battery staple")
        let ids = list.output.split(separator: "\n").map { String($0.split(separator: " ")[0]) }
        #expect(ids.count == 2, "\(list.output)")
        let firstID = try #require(ids.first { !added.output.contains($0) })
        let removed = try await automate(["backup", "key", "remove", firstID, "--repository", repository], passphrase: "battery staple")
        #expect(removed.succeeded, "\(removed.error)")
        let old = try await automate(["backup", "key", "list", repository], passphrase: "correct horse")
        #expect(!old.succeeded, "the removed passphrase still opens the repository")
        let last = try await automate(["backup", "key", "remove", String(ids.first { $0 != firstID }!), "--repository", repository], passphrase: "battery staple")
        #expect(!last.succeeded && last.error.contains("last key"), "\(last.error)")
        let show = try await automate(["backup", "repository", "show", repository])
        #expect(show.output.hasPrefix("\(repository): chunked") && show.output.contains("added key"), "\(show.output)")

        let plain = stack.root + "/plain"
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        let recorded = try await automate(["backup", "repository", "init", "--format", "plain", plain])
        #expect(recorded.succeeded && recorded.output.contains("plain"), "\(recorded.error)")
        let noKeys = try await automate(["backup", "key", "list", plain], passphrase: "x")
        #expect(noKeys.status == .exited(2) && noKeys.error.contains("is a plain repository"), "\(noKeys.error)")
    }
}
