import AutomateManifest
import Foundation
import Logging

/// Decides which user each service runs as, and makes the dedicated system user when needed.
///
/// As root, a manifest's `user` is honoured (and created as a system user if missing, since initdb and
/// friends refuse root). As any other user, every service runs as that user: there is nobody to switch to.
public enum ServiceUsers {
    /// The user per service name (absent: the supervisor's own user).
    public static func resolve(for manifests: ManifestSet, logger: Logger) async throws -> [String: ServiceUser] {
        guard geteuid() == 0 else { return [:] }
        var users: [String: ServiceUser] = [:]
        for manifest in manifests.services {
            guard let name = manifest.user, name != "root" else { continue }
            users[manifest.name] = try await ensureSystemUser(name, logger: logger)
        }
        return users
    }

    /// Looks the user up, creating it with useradd(8) as a system user without login if it is missing.
    public static func ensureSystemUser(_ name: String, logger: Logger) async throws -> ServiceUser {
        if let user = try? ServiceUser.named(name) { return user }
        logger.notice("creating system user \(name)")
        var options = ChildProcess.Options(
            executable: "useradd",
            arguments: ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name],
            environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"])
        options.deathSignal = 0
        let child = try ChildProcess.spawn(options)
        let status = await child.waitForExit()
        child.forget()
        guard status.isSuccess, let user = try? ServiceUser.named(name) else {
            throw SupervisorError(.userSetup, "cannot create system user \(name) (useradd \(status)); create it by hand")
        }
        return user
    }

    /// Makes the run directory usable by the service users: 0700 when everything runs as the supervisor's
    /// user; otherwise 01770 with the services' group (sticky: nobody deletes another's socket).
    public static func prepareRunDirectory(home: AutomateHome, users: [String: ServiceUser]) throws {
        let path = home.runDirectory
        let others = Set(users.values.filter { $0.uid != geteuid() }.map(\.gid))
        if let group = others.first {
            guard chown(path, geteuid(), group) == 0, chmod(path, 0o1770) == 0 else {
                throw SupervisorError(.filesystem, "cannot set owner/mode of \(path): \(String(cString: strerror(errno)))")
            }
        } else {
            chmod(path, 0o700)
        }
    }
}

