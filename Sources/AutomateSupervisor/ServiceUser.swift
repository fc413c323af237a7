import Foundation

/// A Unix user a service runs as: ids and supplementary groups, looked up once.
public struct ServiceUser: Sendable, Equatable {
    public let name: String
    public let uid: uid_t
    public let gid: gid_t
    public let groups: [gid_t]
    public let homeDirectory: String

    /// Why a user could not be used.
    public struct LookupError: Error, CustomStringConvertible {
        public let name: String
        public var description: String {
            "user \"\(name)\" does not exist: create it (as root: useradd --system --no-create-home --shell /usr/sbin/nologin \(name)) or change the manifest's service.user"
        }
    }

    /// A user as given (the lookups below make these from the password database).
    public init(name: String, uid: uid_t, gid: gid_t, groups: [gid_t], homeDirectory: String) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.homeDirectory = homeDirectory
    }

    /// The same user with these supplementary groups.
    public func with(groups: [gid_t]) -> ServiceUser {
        ServiceUser(name: name, uid: uid, gid: gid, groups: groups, homeDirectory: homeDirectory)
    }

    /// The user this process runs as.
    public static func current() -> ServiceUser {
        let uid = geteuid()
        if let entry = lookup(uid: uid) { return entry }
        return ServiceUser(name: String(uid), uid: uid, gid: getegid(), groups: [], homeDirectory: "/")
    }

    /// Looks a user up by name (getpwnam_r), with its supplementary groups.
    public static func named(_ name: String) throws(LookupError) -> ServiceUser {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        let rc = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        guard rc == 0, result != nil else { throw LookupError(name: name) }
        return make(entry)
    }

    /// Looks a user up by uid (getpwuid_r); nil when the password database has no such user.
    public static func lookup(uid: uid_t) -> ServiceUser? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        let rc = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
        guard rc == 0, result != nil else { return nil }
        return make(entry)
    }

    private static func make(_ entry: passwd) -> ServiceUser {
        let name = String(cString: entry.pw_name)
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, entry.pw_gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, entry.pw_gid, &groups, &count)
        }
        return ServiceUser(
            name: name, uid: entry.pw_uid, gid: entry.pw_gid,
            groups: Array(groups.prefix(Int(max(count, 0)))),
            homeDirectory: String(cString: entry.pw_dir))
    }
}
