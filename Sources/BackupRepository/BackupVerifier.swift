import Foundation

/// Re-reads a backup and checks it against its own records: the `.status` marker, `checksums.json`
/// against every service's `metadata.json`, and every artifact's size and sha256.
public struct BackupVerifier: Sendable {
    public let repository: BackupRepository

    public init(repository: BackupRepository) {
        self.repository = repository
    }

    /// The outcome for one file.
    public struct Finding: Sendable, Equatable {
        public enum Verdict: String, Sendable { case ok, corrupted, missing, unverified }
        /// Relative to the backup folder.
        public let file: String
        public let verdict: Verdict
        /// What was wrong (or what was checked).
        public let detail: String
    }

    /// Everything found about one backup.
    public struct Report: Sendable {
        public let id: BackupID
        public let state: BackupRepository.State
        public let findings: [Finding]
        /// Problems that are not about one artifact (state, unreadable records).
        public let problems: [String]

        /// True when the backup is complete and every file checked out.
        public var isSound: Bool {
            problems.isEmpty && findings.allSatisfy { $0.verdict == .ok || $0.verdict == .unverified }
        }
    }

    /// Verifies one backup. With `checkArtifacts` false only the records are checked (fast preflight).
    public func verify(_ id: BackupID, checkArtifacts: Bool = true) throws -> Report {
        let entry = try repository.entry(id)
        let folder = repository.folder(of: id)
        var findings: [Finding] = []
        var problems: [String] = []
        if entry.state == .phaseOne {
            // No records to check against: say what is there, unverified.
            let walker = FileManager.default.enumerator(atPath: folder)
            while let relative = walker?.nextObject() as? String {
                var info = stat()
                guard lstat(folder + "/" + relative, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
                let readable = access(folder + "/" + relative, R_OK) == 0
                findings.append(Finding(
                    file: relative, verdict: readable ? .unverified : .missing,
                    detail: readable ? "phase-one backup: no recorded checksum" : "not readable"))
            }
            return Report(id: id, state: entry.state, findings: findings.sorted { $0.file < $1.file }, problems: problems)
        }
        if entry.state != .completed {
            problems.append("\(id)/.status is \(entry.state.rawValue), not completed: this backup is not restorable")
        }
        let checksums: Checksums
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/checksums.json"))
            checksums = try JSONDecoder().decode(Checksums.self, from: data)
        } catch {
            problems.append("\(id)/checksums.json is missing or unreadable: \(error.localizedDescription)")
            return Report(id: id, state: entry.state, findings: findings, problems: problems)
        }
        for service in entry.services where checksums.files["\(service)/metadata.json"] == nil
            && FileManager.default.fileExists(atPath: "\(folder)/\(service)/metadata.json") {
            problems.append("\(id)/\(service)/metadata.json is not listed in checksums.json")
        }
        for (file, expected) in checksums.files.sorted(by: { $0.key < $1.key }) {
            let full = folder + "/" + file
            guard FileManager.default.fileExists(atPath: full) else {
                findings.append(Finding(file: file, verdict: .missing, detail: "listed in checksums.json, not on disk"))
                continue
            }
            let actual = (try? BackupRepository.sha256(ofFile: full)) ?? ""
            guard actual == expected else {
                findings.append(Finding(file: file, verdict: .corrupted, detail: "sha256 \(actual.prefix(12))…, checksums.json says \(expected.prefix(12))…"))
                continue
            }
            findings.append(Finding(file: file, verdict: .ok, detail: "sha256 matches checksums.json"))
            let service = String(file.split(separator: "/").first ?? "")
            let metadata: ServiceMetadata
            do {
                metadata = try JSONDecoder().decode(ServiceMetadata.self, from: Data(contentsOf: URL(fileURLWithPath: full)))
            } catch {
                problems.append("\(id)/\(file) does not parse: \(error)")
                continue
            }
            for artifact in metadata.artifacts {
                let relative = Self.normalized(service + "/" + artifact.path)
                findings.append(check(artifact, at: folder + "/" + relative, relative: relative, contents: checkArtifacts))
            }
        }
        return Report(id: id, state: entry.state, findings: findings, problems: problems)
    }

    /// `svc/../../automate-elasticsearch-data/x` → `../automate-elasticsearch-data/x` (relative to the backup folder).
    static func normalized(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/") {
            if part == ".." && !out.isEmpty && out.last != ".." { out.removeLast() } else if part != "." { out.append(part) }
        }
        return out.joined(separator: "/")
    }

    private func check(_ artifact: ArtifactRecord, at path: String, relative: String, contents: Bool) -> Finding {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return Finding(file: relative, verdict: .missing, detail: "listed in metadata.json, not on disk")
        }
        guard UInt64(info.st_size) == artifact.size else {
            return Finding(file: relative, verdict: .corrupted, detail: "size \(info.st_size), metadata.json says \(artifact.size)")
        }
        guard contents else { return Finding(file: relative, verdict: .ok, detail: "size matches (sha256 not checked)") }
        guard let actual = try? BackupRepository.sha256(ofFile: path) else {
            return Finding(file: relative, verdict: .missing, detail: "not readable")
        }
        guard actual == artifact.sha256 else {
            return Finding(file: relative, verdict: .corrupted, detail: "sha256 \(actual.prefix(12))…, metadata.json says \(artifact.sha256.prefix(12))…")
        }
        return Finding(file: relative, verdict: .ok, detail: "size and sha256 match")
    }
}
