import AutomateManifest
import Foundation
import Logging

/// Decides which user each service runs as, and makes the system users and groups when needed.
///
/// As root, every service runs as a system user of its own (`[service] user`, else
/// `automate-<short name>`), created on first start (initdb and friends refuse root anyway); only
/// `user = "root"` keeps a service as root. As any other user, every service runs as that user: there is
/// nobody to switch to.
public enum ServiceUsers {
    /// The group of the run folder: every service user is in it (as a supplementary group the supervisor
    /// gives its processes), nobody else.
    public static let runGroupName = "automate"

    /// Every service's access (empty: everything runs as the supervisor's user).
    public static func resolve(for manifests: ManifestSet, home: AutomateHome, logger: Logger) async throws -> [String: ServiceAccess] {
        guard geteuid() == 0 else { return [:] }
        var users: [String: ServiceUser] = [:]
        for manifest in manifests.services where manifest.runUserName != "root" {
            users[manifest.name] = try await ensureSystemUser(manifest.runUserName, logger: logger)
        }
        var dataGroups: [String: gid_t] = [:]
        for manifest in manifests.services where users[manifest.name] != nil && ServiceAccess.sharesData(manifest, in: manifests) {
            dataGroups[manifest.name] = try await ensureSystemGroup(ServiceAccess.dataGroupName(manifest), logger: logger)
        }
        let runGroup = try await ensureSystemGroup(runGroupName, logger: logger)
        var owner = stat()
        var operators: Set<UInt32> = [0, UInt32(geteuid())]
        if stat(home.path, &owner) == 0 { operators.insert(UInt32(owner.st_uid)) }
        return ServiceAccess.derive(manifests: manifests, users: users, dataGroups: dataGroups, operators: operators, runGroup: runGroup)
    }

    /// Looks the user up, creating it with useradd(8) as a system user without login (and a group of
    /// its own) if it is missing.
    public static func ensureSystemUser(_ name: String, logger: Logger) async throws -> ServiceUser {
        if let user = try? ServiceUser.named(name) { return user }
        logger.notice("creating system user \(name)")
        try await run("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                                  "--shell", "/usr/sbin/nologin", name], what: "system user \(name)") {
            (try? ServiceUser.named(name)) != nil
        }
        guard let user = try? ServiceUser.named(name) else {
            throw SupervisorError(.userSetup, "useradd made no user \(name); create it by hand")
        }
        return user
    }

    /// Looks the group up, creating it with groupadd(8) as a system group if it is missing.
    public static func ensureSystemGroup(_ name: String, logger: Logger) async throws -> gid_t {
        if let gid = groupID(name) { return gid }
        logger.notice("creating system group \(name)")
        try await run("groupadd", ["--system", name], what: "system group \(name)") { groupID(name) != nil }
        guard let gid = groupID(name) else { throw SupervisorError(.userSetup, "groupadd made no group \(name); create it by hand") }
        return gid
    }

    private static func groupID(_ name: String) -> gid_t? {
        var entry = group()
        var result: UnsafeMutablePointer<group>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    /// Runs useradd/groupadd. Another supervisor (a second stack on the machine) may be making the same
    /// user, or holding the password file's lock, at the same moment: a failure is tried again a few
    /// times, and `done` (the user or group exists by now) counts as success.
    private static func run(_ program: String, _ arguments: [String], what: String, done: () -> Bool) async throws {
        var status = ExitStatus.exited(0)
        for attempt in 1...5 {
            var options = ChildProcess.Options(
                executable: program, arguments: arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
            options.deathSignal = 0
            let child = try ChildProcess.spawn(options)
            status = await child.waitForExit()
            child.forget()
            if status.isSuccess || done() { return }
            try await Task.sleep(for: .milliseconds(100 * attempt))
        }
        guard status.isSuccess else {
            throw SupervisorError(.userSetup, "cannot create \(what) (\(program) \(status)): create it by hand as root, "
                                  + "or run `automate systemd install` first when the stack runs under systemd (its unit cannot write /etc)")
        }
    }

    /// Gives a folder and everything in it to a service user and its group (a repository copied in for
    /// its gateway); returns how many entries changed hands.
    public static func handOver(_ path: String, to user: ServiceUser) throws -> Int {
        try ServiceFiles.handOver(path, to: user.uid, group: user.gid, name: user.name)
    }

    /// Makes the run folder usable by the service users: 0700 when everything runs as the supervisor's
    /// user; otherwise 01770 with the run group (sticky: nobody deletes or renames another's socket).
    /// Clears what earlier runs left there (sockets, PostgreSQL's lock file), so that a service never
    /// finds a file of another user at its socket's name; the supervisor's own lock stays.
    public static func prepareRunDirectory(home: AutomateHome, access: [String: ServiceAccess]) throws {
        let path = home.runDirectory
        if let group = access.isEmpty ? nil : groupID(runGroupName) {
            guard chown(path, geteuid(), group) == 0, chmod(path, 0o1770) == 0 else {
                throw SupervisorError(.filesystem, "cannot set owner/mode of \(path): \(String(cString: strerror(errno)))")
            }
        } else {
            chmod(path, 0o700)
        }
    }

    /// Removes every file an earlier run left in the run folder but the supervisor's lock. Call with the
    /// lock held, before anything starts.
    public static func clearRunDirectory(home: AutomateHome) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: home.runDirectory)) ?? []
        let lock = (home.lockFilePath as NSString).lastPathComponent
        for entry in entries where entry != lock {
            var info = stat()
            let path = home.runDirectory + "/" + entry
            guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR else { continue }
            unlink(path)
        }
    }
}
