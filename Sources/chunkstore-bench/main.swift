// chunkstore-bench: drives the ChunkStore library from a pipe, for scripts/bench-chunks.sh (the chunked
// format against restic and the plain format on the same data, before the sidecars write through it).
//
//   chunkstore-bench write [--tar] REPOSITORY NAME < artifact
//                                  store stdin as one artifact (--tar: a tar stream, chunked with the tar
//                                  layout); the record goes to REPOSITORY.records/NAME.json; prints one line:
//                                  bytes=N new=N reused=N stored=N chunks=N seconds=S
//                                  (and with --tar: members=N cuts=N; a stream that is not tar is said on stderr)
//   chunkstore-bench read REPOSITORY NAME > artifact
//                                  restore it (the record's digest, then every chunk checked)
//
// The repository folder is made on first write. The passphrase is $AUTOMATE_BACKUP_PASSPHRASE.
import ChunkStore
import Foundation

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("chunkstore-bench: \(message)\n".utf8))
    exit(1)
}

var arguments = CommandLine.arguments
let tarLayout = arguments.count > 2 && arguments[1] == "write" && arguments[2] == "--tar"
if tarLayout { arguments.remove(at: 2) }
guard arguments.count == 4, ["write", "read"].contains(arguments[1]) else {
    fail("usage: chunkstore-bench write [--tar] REPOSITORY NAME | read REPOSITORY NAME (passphrase in AUTOMATE_BACKUP_PASSPHRASE)")
}
let (mode, folder, name) = (arguments[1], arguments[2], arguments[3])
guard let passphrase = ProcessInfo.processInfo.environment["AUTOMATE_BACKUP_PASSPHRASE"], !passphrase.isEmpty else {
    fail("set AUTOMATE_BACKUP_PASSPHRASE")
}
let recordPath = folder + ".records/\(name).json"

do {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let store = try FolderStore(root: folder)
    let repository = try store.exists("config")
        ? try Repository.open(store: store, passphrase: passphrase)
        : try Repository.initialize(store: store, passphrase: passphrase, label: "bench")
    let started = ContinuousClock.now
    if mode == "write" {
        let session = try ChunkedWriter(repository: repository)
        let artifact = try session.artifact(name: name, layout: tarLayout ? .tar : .stream)
        // A pipe of 1 MiB rather than 64 KiB: fewer wake-ups of the writer (fails harmlessly when stdin is a
        // file). F_SETPIPE_SZ (1031) is not visible to Swift's Glibc module.
        _ = fcntl(0, 1031, Int32(1 << 20))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if count < 0 { fail("reading stdin: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            try buffer.withUnsafeBytes { try artifact.write(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
        let record = try artifact.finish()
        _ = try session.commit()
        try FileManager.default.createDirectory(atPath: folder + ".records", withIntermediateDirectories: true)
        try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: recordPath))
        let took = (ContinuousClock.now - started).components
        let seconds = Double(took.seconds) + Double(took.attoseconds) / 1e18
        if let problem = artifact.layoutProblem {
            FileHandle.standardError.write(Data("chunkstore-bench: \(name) is not followed as tar from there on: \(problem)\n".utf8))
        }
        let tar = tarLayout ? " members=\(artifact.tarMembers) cuts=\(artifact.layoutCuts)" : ""
        print(
            "bytes=\(record.size) new=\(record.newBytes) reused=\(record.reusedBytes) stored=\(record.storedBytes) chunks=\(record.blobs.count)\(tar) "
                + "seconds=\(String(format: "%.2f", seconds))")
    } else {
        let record = try JSONDecoder().decode(ArtifactRecord.self, from: Data(contentsOf: URL(fileURLWithPath: recordPath)))
        try ChunkedReader(repository: repository).restore(record) { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
                offset += written
            }
        }
    }
} catch {
    fail("\(error)")
}
