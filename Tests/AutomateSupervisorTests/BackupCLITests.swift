import AutomateSupervisor
import BackupRepository
import Foundation
import Testing

/// `automate backup list/show/verify` against a repository written with plain files.
@Suite("automate backup (repository inspection)")
struct BackupCLITests {
    @Test("list, show and verify; a flipped byte makes verify fail naming the file; an unknown id is a clear error")
    func inspect() async throws {
        let stack = try TestStack(name: "backupcli")
        defer { Task { await stack.tearDown() } }
        let repository = stack.root + "/repo"
        let id = "20260302081223"
        let service = repository + "/\(id)/teams-service"
        try FileManager.default.createDirectory(atPath: service + "/pg_data", withIntermediateDirectories: true)
        let artifact = service + "/pg_data/teams.fc.zst"
        try Data((0..<50_000).map { UInt8($0 % 199) }).write(to: URL(fileURLWithPath: artifact))
        let metadata = ServiceMetadata(service: "teams-service", backupID: id, artifacts: [
            ArtifactRecord(path: "pg_data/teams.fc.zst", size: 50_000, sha256: try BackupRepository.sha256(ofFile: artifact), format: "pg_dump_custom_zstd"),
        ])
        try JSONEncoder().encode(metadata).write(to: URL(fileURLWithPath: service + "/metadata.json"))
        let checksums = Checksums(backupID: id, files: ["teams-service/metadata.json": try BackupRepository.sha256(ofFile: service + "/metadata.json")])
        try JSONEncoder().encode(checksums).write(to: URL(fileURLWithPath: repository + "/\(id)/checksums.json"))
        try "completed\n".write(toFile: repository + "/\(id)/.status", atomically: true, encoding: .utf8)

        let list = try await stack.automate(["backup", "list", repository])
        #expect(list.succeeded, "\(list.error)")
        #expect(list.output.contains(id) && list.output.contains("completed") && list.output.contains("teams-service"))
        let show = try await stack.automate(["backup", "show", id, "--repository", repository])
        #expect(show.output.contains("fingerprint  \(try BackupRepository.sha256(ofFile: repository + "/\(id)/checksums.json"))"))
        let verify = try await stack.automate(["backup", "verify", "--repository", repository])
        #expect(verify.succeeded, "\(verify.output)\(verify.error)")
        #expect(verify.output.contains("1 backups verified, no faults."))

        var bytes = try Data(contentsOf: URL(fileURLWithPath: artifact))
        bytes[123] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: artifact))
        let corrupted = try await stack.automate(["backup", "verify", id, "--repository", repository])
        #expect(corrupted.status == AutomateSupervisor.ExitStatus.exited(1))
        #expect(corrupted.output.contains("corrupted") && corrupted.output.contains("teams-service/pg_data/teams.fc.zst"))

        let unknown = try await stack.automate(["backup", "show", "20991231235959", "--repository", repository])
        #expect(!unknown.succeeded)
        #expect(unknown.error.contains("no backup 20991231235959 in \(repository)"))
    }
}
