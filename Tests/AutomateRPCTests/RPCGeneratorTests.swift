import AutomateSupervisor
import Foundation
import Testing

/// scripts/generate-rpc.py: the committed `.rpc.swift` files are what it generates now from the
/// `.proto` files (so they cannot go stale), and it refuses what it cannot describe.
@Suite struct RPCGeneratorTests {
    /// The package root, from this file's path (Tests/AutomateRPCTests/<file>).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    struct Run {
        var status: Int32
        var stderr: String
    }

    /// Runs the generator. Through ``ChildProcess`` rather than Foundation's `Process`: the supervisor
    /// tests in this same process start the ``ProcessReaper``, which reaps every child (and would hand
    /// `Process` a made-up exit status).
    static func generate(_ arguments: [String]) async throws -> Run {
        let errPath = FileManager.default.temporaryDirectory.path + "/generate-rpc-\(UUID().uuidString).err"
        let err = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { unlink(errPath) }
        var options = ChildProcess.Options(
            executable: "/usr/bin/env", arguments: ["python3", "\(root)/scripts/generate-rpc.py"] + arguments,
            environment: ProcessInfo.processInfo.environment)
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        options.standardOutput = null
        options.standardError = err
        options.deathSignal = 0
        let child: ChildProcess
        do { child = try ChildProcess.spawn(options) } catch { close(err); close(null); throw error }
        close(err)
        close(null)
        let status = await child.waitForExit()
        child.forget()
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return Run(status: status.isSuccess ? 0 : 1, stderr: stderr)
    }

    /// Relative paths of the files under `folder` whose names end with `suffix`.
    static func files(under folder: String, endingWith suffix: String) -> Set<String> {
        let enumerator = FileManager.default.enumerator(atPath: folder)
        var found: Set<String> = []
        while let path = enumerator?.nextObject() as? String {
            if path.hasSuffix(suffix) { found.insert(path) }
        }
        return found
    }

    @Test func committedDescriptorsAreUpToDate() async throws {
        let output = TempDir()
        defer { output.remove() }
        let run = try await Self.generate(["--output-root", output.path])
        #expect(run.status == 0, "\(run.stderr)")
        let generated = Self.files(under: output.path, endingWith: ".rpc.swift")
        let committed = Self.files(under: "\(Self.root)/Sources", endingWith: ".rpc.swift").map { "Sources/\($0)" }
        #expect(generated.count == 7, "\(generated.sorted())")
        #expect(generated == Set(committed), "run scripts/generate-rpc.py and commit the result")
        for path in generated.sorted() {
            let fresh = try String(contentsOfFile: "\(output.path)/\(path)", encoding: .utf8)
            let inTree = try String(contentsOfFile: "\(Self.root)/\(path)", encoding: .utf8)
            #expect(fresh == inTree, "\(path) is stale: run scripts/generate-rpc.py and commit the result")
        }
    }

    @Test func refusesUnknownTypesAndClientStreaming() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let unknown = "\(dir.path)/unknown.proto"
        try """
            syntax = "proto3";
            package demo.v1;
            message Ping {}
            service Demo {
              rpc Ping(Ping) returns (Pong);
            }
            """.write(toFile: unknown, atomically: true, encoding: .utf8)
        let first = try await Self.generate(["--output-root", dir.path, unknown])
        #expect(first.status != 0)
        #expect(first.stderr.contains("unknown.proto:5") && first.stderr.contains("Pong"), "\(first.stderr)")

        let streaming = "\(dir.path)/streaming.proto"
        try """
            syntax = "proto3";
            package demo.v1;
            message Ping {}
            service Demo {
              rpc Upload(stream Ping) returns (Ping);
            }
            """.write(toFile: streaming, atomically: true, encoding: .utf8)
        let second = try await Self.generate(["--output-root", dir.path, streaming])
        #expect(second.status != 0)
        #expect(second.stderr.contains("streams its request"), "\(second.stderr)")
        #expect(Self.files(under: dir.path, endingWith: ".rpc.swift").isEmpty)
    }
}
