import AutomateRPC
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct RPCSocketFileTests {
    func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as! NSNumber).intValue
    }

    @Test func socketIs0660InsideA0700RunDirectory() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        // The parent of the run directory does not exist yet; the run directory must be created.
        let path = "\(dir.path)/var/run/svc.sock"
        let server = RPCServer(configuration: .init(socketPath: path), logger: testLogger)
        try await server.start()
        #expect(try mode(path) == 0o660)
        #expect(try mode("\(dir.path)/var/run") == 0o700)
        await server.shutdown()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func existingRunDirectoryIsForcedTo0700() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        try FileManager.default.createDirectory(
            atPath: "\(dir.path)/run", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let server = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        try await server.start()
        #expect(try mode("\(dir.path)/run") == 0o700)
        await server.shutdown()
    }

    @Test func sharedStickyRunDirectoryIsKeptButWorldWritableIsRefused() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let run = "\(dir.path)/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        #expect(chmod(run, 0o1770) == 0)
        let server = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        try await server.start()
        #expect(try mode(run) & 0o7777 == 0o1770)
        #expect(try mode(dir.socket()) == 0o660)
        await server.shutdown()

        #expect(chmod(run, 0o1777) == 0)
        let refused = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        let error = await #expect(throws: RPCServerError.self) { try await refused.start() }
        if case .runDirectory(let path, _) = error {
            #expect(path == run)
        } else {
            Issue.record("expected runDirectory, got \(String(describing: error))")
        }
    }

    @Test func staleSocketIsReplaced() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: "\(dir.path)/run", withIntermediateDirectories: true)
        // A socket file nobody listens on, as a crashed process leaves behind.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(dir.socket().utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        close(fd)
        #expect(FileManager.default.fileExists(atPath: dir.socket()))

        let server = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        server.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
        try await server.start()
        let client = try await RPCClient.connect(socketPath: dir.socket())
        #expect(try await client.unary("test/Echo", Msg.text("fresh"), as: Msg.self).method == "fresh")
        await client.close()
        await server.shutdown()
    }

    @Test func liveSocketIsRefused() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let first = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        first.registerUnary("test/Echo") { (request: Msg, _: RPCCallContext) in request }
        try await first.start()
        let second = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        let error = await #expect(throws: RPCServerError.self) { try await second.start() }
        #expect(error == .socketInUse(path: dir.socket()))
        #expect(error?.description.contains("another process is serving \(dir.socket())") == true)
        // The first server is untouched.
        let client = try await RPCClient.connect(socketPath: dir.socket())
        #expect(try await client.unary("test/Echo", Msg.text("first"), as: Msg.self).method == "first")
        await client.close()
        await first.shutdown()
    }

    @Test func regularFileIsNotDeleted() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: "\(dir.path)/run", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir.socket(), contents: Data("keep".utf8))
        let server = RPCServer(configuration: .init(socketPath: dir.socket()), logger: testLogger)
        let error = await #expect(throws: RPCServerError.self) { try await server.start() }
        #expect(error == .notASocket(path: dir.socket()))
        #expect(FileManager.default.contents(atPath: dir.socket()) == Data("keep".utf8))
    }
}
