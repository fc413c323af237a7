#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Who is at the other end of a Unix-domain connection, as the kernel recorded it when the peer
/// connected (`SO_PEERCRED`): its pid, uid and gid. A peer cannot forge these.
public struct RPCPeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    /// `uid 997 (automate-search), pid 1234`.
    public var description: String {
        "uid \(uid)\(Self.userName(uid).map { " (\($0))" } ?? ""), pid \(pid)"
    }

    /// The kernel's `struct ucred` (pid_t, uid_t, gid_t), read through NIO's raw socket-option access.
    private struct UCred: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// The peer of an accepted connection; nil where the platform has no `SO_PEERCRED`.
    static func of(_ channel: any Channel) -> EventLoopFuture<RPCPeerCredentials?> {
        #if os(Linux)
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<UCred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.map { RPCPeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
        #else
        return channel.eventLoop.makeSucceededFuture(nil)
        #endif
    }

    /// The user's name from the password database, if it has one.
    static func userName(_ uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid_t(uid), &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return String(cString: entry.pw_name)
    }

    /// This process's environment, read without Foundation.
    static func processEnvironment() -> [String: String] {
        var values: [String: String] = [:]
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                values[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            cursor += 1
        }
        return values
    }
}
