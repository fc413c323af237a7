import BackupRepository
import Crypto
import Foundation
import Testing

/// Repositories written by hand with plain files, read back through the library.
@Suite("Backup repository")
struct BackupRepositoryTests {
    /// A repository with a completed backup (metadata, checksums, two artifacts), a failed one, one in
    /// progress and a phase-one folder.
    final class Fixture {
        let root: String
        let completed = BackupID("20260302081223")!
        let failed = BackupID("20260303000000")!
        let running = BackupID("20260304000000")!
        let phaseOne = BackupID("20250101120000")!
        var repository: BackupRepository { BackupRepository(path: root) }

        init() throws {
            root = FileManager.default.temporaryDirectory.path + "/automate-repo-\(UUID().uuidString)"
            let fm = FileManager.default
            let base = root + "/\(completed)"
            try fm.createDirectory(atPath: base + "/teams-service/pg_data", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: base + "/compliance-service/files", withIntermediateDirectories: true)
            let dump = Data((0..<100_000).map { UInt8($0 % 251) })
            let tarball = Data("not really a tarball, but bytes\n".utf8)
            try dump.write(to: URL(fileURLWithPath: base + "/teams-service/pg_data/teams.fc.zst"))
            try tarball.write(to: URL(fileURLWithPath: base + "/compliance-service/files/profiles.tar.zst"))
            var checksums: [String: String] = [:]
            for (service, path, data, format) in [
                ("teams-service", "pg_data/teams.fc.zst", dump, "pg_dump_custom_zstd"),
                ("compliance-service", "files/profiles.tar.zst", tarball, "tar_zstd"),
            ] {
                let metadata = ServiceMetadata(
                    service: service, backupID: completed.rawValue,
                    artifacts: [ArtifactRecord(path: path, size: UInt64(data.count), sha256: Self.hex(data), format: format)])
                let encoded = try JSONEncoder().encode(metadata)
                try encoded.write(to: URL(fileURLWithPath: base + "/\(service)/metadata.json"))
                checksums["\(service)/metadata.json"] = Self.hex(encoded)
            }
            try JSONEncoder().encode(Checksums(backupID: completed.rawValue, files: checksums))
                .write(to: URL(fileURLWithPath: base + "/checksums.json"))
            try "completed\n".write(toFile: base + "/.status", atomically: true, encoding: .utf8)
            for (id, state) in [(failed, "failed"), (running, "in_progress")] {
                try fm.createDirectory(atPath: root + "/\(id)/teams-service", withIntermediateDirectories: true)
                try state.write(toFile: root + "/\(id)/.status", atomically: true, encoding: .utf8)
            }
            try fm.createDirectory(atPath: root + "/\(phaseOne)/notifications-service/pg_data", withIntermediateDirectories: true)
            try "CREATE TABLE t (id int);\n".write(
                toFile: root + "/\(phaseOne)/notifications-service/pg_data/notifications.sql", atomically: true, encoding: .utf8)
            try fm.createDirectory(atPath: root + "/not-a-backup", withIntermediateDirectories: true)
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        static func hex(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }
    }

    @Test("list: every backup folder with its state, restorability, services and size; others skipped")
    func list() throws {
        let fixture = try Fixture()
        let entries = try fixture.repository.list()
        #expect(entries.map(\.id) == [fixture.phaseOne, fixture.completed, fixture.failed, fixture.running])
        #expect(entries.map(\.state) == [.phaseOne, .completed, .failed, .inProgress])
        #expect(entries.map(\.state.isRestorable) == [true, true, false, false])
        let completed = entries[1]
        #expect(completed.services == ["compliance-service", "teams-service"])
        #expect(completed.size > 100_000)
        let checksums = try Data(contentsOf: URL(fileURLWithPath: fixture.root + "/\(fixture.completed)/checksums.json"))
        #expect(completed.fingerprint == Fixture.hex(checksums))
    }

    @Test("verify: a sound backup passes; a flipped byte, a missing artifact and an edited metadata.json are named")
    func verify() throws {
        let fixture = try Fixture()
        let verifier = BackupVerifier(repository: fixture.repository)
        let sound = try verifier.verify(fixture.completed)
        #expect(sound.isSound, "\(sound.findings) \(sound.problems)")
        #expect(sound.findings.filter { $0.verdict == .ok }.count == 4)

        let dump = fixture.root + "/\(fixture.completed)/teams-service/pg_data/teams.fc.zst"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dump))
        bytes[5000] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: dump))
        let flipped = try verifier.verify(fixture.completed)
        #expect(!flipped.isSound)
        #expect(flipped.findings.contains { $0.file == "teams-service/pg_data/teams.fc.zst" && $0.verdict == .corrupted })
        // A size-only preflight cannot see a flipped byte; the full check does.
        #expect(try verifier.verify(fixture.completed, checkArtifacts: false).isSound)

        try FileManager.default.removeItem(atPath: fixture.root + "/\(fixture.completed)/compliance-service/files/profiles.tar.zst")
        let missing = try verifier.verify(fixture.completed)
        #expect(missing.findings.contains { $0.file == "compliance-service/files/profiles.tar.zst" && $0.verdict == .missing })

        let metadata = fixture.root + "/\(fixture.completed)/teams-service/metadata.json"
        try (try String(contentsOfFile: metadata, encoding: .utf8) + " ").write(toFile: metadata, atomically: true, encoding: .utf8)
        let edited = try verifier.verify(fixture.completed)
        #expect(edited.findings.contains { $0.file == "teams-service/metadata.json" && $0.verdict == .corrupted })
    }

    @Test("verify: incomplete backups are faults naming their state; phase-one files are listed unverified")
    func states() throws {
        let fixture = try Fixture()
        let verifier = BackupVerifier(repository: fixture.repository)
        let failed = try verifier.verify(fixture.failed)
        #expect(!failed.isSound)
        #expect(failed.problems.contains { $0.contains(".status is failed, not completed") })
        let phaseOne = try verifier.verify(fixture.phaseOne)
        #expect(phaseOne.isSound)
        #expect(phaseOne.findings.map(\.file) == ["notifications-service/pg_data/notifications.sql"])
        #expect(phaseOne.findings.first?.verdict == .unverified)
        #expect(throws: BackupRepository.Failure.self) { try verifier.verify(BackupID("20990101000000")!) }
    }

    @Test("backup ids: 14 digits of a real UTC time")
    func ids() {
        #expect(BackupID("20260302081223") != nil)
        #expect(BackupID("2026030208122") == nil)
        #expect(BackupID("20260230081223") == nil, "February 30th")
        #expect(BackupID("2026030208122x") == nil)
        let date = Date(timeIntervalSince1970: 1_772_439_143)
        #expect(BackupID(date: date).rawValue == "20260302081223")
        #expect(BackupID("20260302081223")!.date == date)
    }
}
