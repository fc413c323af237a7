import AutomateSupervisor
import BackupRepository
import Foundation
import Testing

/// The stack's repository is one setting (the gateway's): commands without a repository argument read
/// it, and a restore from another repository leaves it as it was unless told otherwise.
@Suite("One repository setting", .serialized)
struct RepositorySettingTests {
    @Test("a restore from a copy reads it for the restore only; --adopt-repository makes it the stack's and says so")
    func restoreKeepsOwnRepository() async throws {
        let stack = try TestStack(name: "repo-setting")
        defer { Task { await stack.tearDown() } }
        let ports = try stack.useFullStack()
        let start = try await stack.automate(["start"])
        try #require(start.succeeded, "\(stack.failure(start))")
        try await stack.loadSampleData()
        let id = try await stack.createBackup()
        let copy = try await stack.copyRepositoryAndLoseHome(ports)
        let overlay = stack.home.configOverlayPath(service: "backup-gateway")
        let own = try String(contentsOfFile: overlay, encoding: .utf8)

        let restore = try await stack.automate(["restore", copy])
        try #require(restore.succeeded, "\(stack.failure(restore))")
        #expect(restore.output.contains("The stack's repository stays \(stack.home.backupsDirectory); \(copy) was read for this restore only."),
                "\(restore.output)")
        #expect(try String(contentsOfFile: overlay, encoding: .utf8) == own)
        #expect(!FileManager.default.fileExists(atPath: BorrowedRepository.markerPath(home: stack.home.path)))
        // The search indices were loaded from the copy before the gateway went back.
        let search = try await stack.automate(["compliance", "search", "kernel"])
        #expect(search.output.contains("node-2\tfailed\tkernel too old"), "\(search.output)\(search.error)")

        // The next backup goes to the stack's own repository, and `backup list` (no argument) lists it.
        let next = try await stack.createBackup()
        #expect(try String(contentsOfFile: stack.home.backupsDirectory + "/\(next)/.status", encoding: .utf8) == "completed\n")
        #expect(!FileManager.default.fileExists(atPath: copy + "/\(next)"))
        let list = try await stack.automate(["backup", "list"])
        #expect(list.output.contains("\(next)  completed") && !list.output.contains(id), "\(list.output)\(list.error)")
        let restoreList = try await stack.automate(["restore", "list"])
        #expect(restoreList.output.contains("\(next)  completed"), "\(restoreList.output)\(restoreList.error)")
        let verify = try await stack.automate(["backup", "verify"])
        #expect(verify.succeeded && verify.output.contains("1 backups verified, no faults."), "\(verify.output)\(verify.error)")

        // --adopt-repository: the copy becomes the stack's repository, and the CLI says so.
        let adopt = try await stack.automate(["restore", copy, id, "--force", "--adopt-repository"])
        try #require(adopt.succeeded, "\(adopt.output)\(adopt.error)")
        #expect(adopt.output.contains("The stack's repository is now \(copy) (--adopt-repository): later backups go there, not to \(stack.home.backupsDirectory)."),
                "\(adopt.output)")
        let adopted = try await stack.automate(["backup", "list"])
        #expect(adopted.output.contains("\(id)  completed") && !adopted.output.contains(next), "\(adopted.output)\(adopted.error)")
        let third = try await stack.createBackup()
        #expect(try String(contentsOfFile: copy + "/\(third)/.status", encoding: .utf8) == "completed\n")
    }
}
