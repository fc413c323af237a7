import Crypto
import Foundation
import Synchronization

/// Re-reads a backup and checks it against its own records: the `.status` marker, `checksums.json`
/// against every service's `metadata.json`, and every artifact's size and sha256.
public struct BackupVerifier: Sendable {
    public let repository: BackupRepository
    /// A chunked repository's chunk store, opened; nil: chunked artifacts are reported unverified.
    public let chunks: ChunkCheck?

    public init(repository: BackupRepository, chunks: ChunkCheck? = nil) {
        self.repository = repository
        self.chunks = chunks
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

    /// Verifies one backup. With `checkArtifacts` false only the records (and artifact sizes) are checked
    /// (fast preflight).
    public func verify(_ id: BackupID, checkArtifacts: Bool = true) throws -> Report {
        try verify(repository.entry(id), checkArtifacts: checkArtifacts)
    }

    /// Verifies a backup already listed (its folder is not listed again).
    public func verify(_ entry: BackupRepository.Entry, checkArtifacts: Bool = true) throws -> Report {
        let id = entry.id
        let store = repository.store
        let base = id.rawValue + "/"
        var findings: [Finding] = []
        var problems: [String] = []
        var pending: [(index: Int, artifact: ArtifactRecord, key: String, relative: String)] = []
        if entry.state == .phaseOne {
            // No records to check against: say what is there, unverified.
            for file in try store.files(under: base) {
                findings.append(Finding(file: String(file.path.dropFirst(base.count)), verdict: .unverified,
                                        detail: "phase-one backup: no recorded checksum"))
            }
            return Report(id: id, state: entry.state, findings: findings.sorted { $0.file < $1.file }, problems: problems)
        }
        if entry.state != .completed {
            problems.append("\(id)/.status is \(entry.state.rawValue), not completed: this backup is not restorable")
        }
        let checksums: Checksums
        do {
            guard let data = try store.read(base + "checksums.json") else {
                throw BackupRepository.Failure(kind: .notFound, message: "not found")
            }
            checksums = try JSONDecoder().decode(Checksums.self, from: data)
        } catch {
            problems.append("\(id)/checksums.json is missing or unreadable: \(error)")
            return Report(id: id, state: entry.state, findings: findings, problems: problems)
        }
        for service in entry.services where checksums.files["\(service)/metadata.json"] == nil
            && ((try? store.size(base + "\(service)/metadata.json")) ?? nil) != nil {
            problems.append("\(id)/\(service)/metadata.json is not listed in checksums.json")
        }
        for (file, expected) in checksums.files.sorted(by: { $0.key < $1.key }) {
            guard let data = try store.read(base + file) else {
                findings.append(Finding(file: file, verdict: .missing, detail: "listed in checksums.json, not in the repository"))
                continue
            }
            let actual = Checksum.sha256(data)
            guard actual == expected else {
                findings.append(Finding(file: file, verdict: .corrupted, detail: "sha256 \(actual.prefix(12))…, checksums.json says \(expected.prefix(12))…"))
                continue
            }
            findings.append(Finding(file: file, verdict: .ok, detail: "sha256 matches checksums.json"))
            let service = String(file.split(separator: "/").first ?? "")
            let metadata: ServiceMetadata
            do {
                metadata = try JSONDecoder().decode(ServiceMetadata.self, from: data)
            } catch {
                problems.append("\(id)/\(file) does not parse: \(error)")
                continue
            }
            for artifact in metadata.artifacts {
                let relative = Self.normalized(service + "/" + artifact.path)
                let key = Self.normalized(base + service + "/" + artifact.path)
                pending.append((findings.count, artifact, key, relative))
                findings.append(Finding(file: relative, verdict: .unverified, detail: "not checked yet"))
            }
        }
        // Chunked artifacts: their chunks, through the chunk store (every blob indexed and its pack
        // present; with contents, every blob of the packs read authenticated).
        let chunked = pending.filter { $0.artifact.chunks != nil }
        pending.removeAll { $0.artifact.chunks != nil }
        if !chunked.isEmpty {
            if let chunks {
                let problems = try chunks.problems(chunked.map { $0.artifact.chunks! }, contents: checkArtifacts)
                for (n, c) in chunked.enumerated() {
                    let record = c.artifact.chunks!
                    if let found = problems[n] {
                        findings[c.index] = Finding(file: c.relative, verdict: .corrupted, detail: found.joined(separator: "; "))
                    } else {
                        let what = checkArtifacts && chunks.packHashesOnly
                            ? "\(record.blobs.count) chunks present, their packs' sha256 intact"
                            : checkArtifacts && chunks.readDataSubset >= 1
                            ? "\(record.blobs.count) chunks authenticated"
                            : checkArtifacts ? "\(record.blobs.count) chunks present (a sample of packs read)" : "\(record.blobs.count) chunks present"
                        findings[c.index] = Finding(file: c.relative, verdict: .ok, detail: what)
                    }
                }
            } else {
                for c in chunked {
                    findings[c.index] = Finding(file: c.relative, verdict: .unverified, detail: "chunked: give the repository's passphrase to check its chunks")
                }
            }
        }
        // Re-reading the artifacts is most of the work: they are read at once, a few at a time (the
        // largest first), and their findings land where they were listed.
        let checks = pending.sorted { $0.artifact.size > $1.artifact.size }
        let results = Mutex([(Int, Finding)]())
        DispatchQueue.concurrentPerform(iterations: min(checks.count, Self.parallelReads)) { worker in
            for i in stride(from: worker, to: checks.count, by: Self.parallelReads) {
                let c = checks[i]
                let finding = check(c.artifact, key: c.key, relative: c.relative, contents: checkArtifacts)
                results.withLock { $0.append((c.index, finding)) }
            }
        }
        for (index, finding) in results.withLock({ $0 }) { findings[index] = finding }
        return Report(id: id, state: entry.state, findings: findings, problems: problems)
    }

    /// How many artifacts are re-read at once: the processors, at most 4 (a repository on one disk).
    static let parallelReads = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))

    /// `svc/../../automate-elasticsearch-data/x` → `../automate-elasticsearch-data/x` (relative to the backup folder).
    static func normalized(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/") {
            if part == ".." && !out.isEmpty && out.last != ".." { out.removeLast() } else if part != "." { out.append(part) }
        }
        return out.joined(separator: "/")
    }

    private func check(_ artifact: ArtifactRecord, key: String, relative: String, contents: Bool) -> Finding {
        let store = repository.store
        guard let size = try? store.size(key) else {
            return Finding(file: relative, verdict: .missing, detail: "listed in metadata.json, not on disk")
        }
        guard size == artifact.size else {
            return Finding(file: relative, verdict: .corrupted, detail: "size \(size), metadata.json says \(artifact.size)")
        }
        guard contents else { return Finding(file: relative, verdict: .ok, detail: "size matches (sha256 not checked)") }
        guard let actual = try? store.sha256(key) else {
            return Finding(file: relative, verdict: .missing, detail: "not readable")
        }
        guard actual == artifact.sha256 else {
            return Finding(file: relative, verdict: .corrupted, detail: "sha256 \(actual.prefix(12))…, metadata.json says \(artifact.sha256.prefix(12))…")
        }
        return Finding(file: relative, verdict: .ok, detail: "size and sha256 match")
    }
}
