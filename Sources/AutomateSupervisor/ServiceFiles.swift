import Foundation

/// Puts a service's own files in order before each start: its data folder (made, owned by its user,
/// 0700, or 02770 with its data group when shared: new files and folders in it take that group) and its copies of the gateway
/// key pair and of an external server's password and CA. A folder owned by someone else (a home made when every service ran as one user) is handed
/// over to the service's user and group, every file in it, and the move is reported. Modes of the
/// files inside are the service's own business and never changed (a restore puts back the exact ones).
enum ServiceFiles {
    /// Prepares the files; returns lines worth logging (ownership moved), empty when nothing changed.
    static func prepare(_ context: ServiceContext) throws -> [String] {
        var notes: [String] = []
        let path = context.dataDirectory
        var info = stat()
        let created = stat(path, &info) != 0
        if created {
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
                throw SupervisorError(.filesystem, "cannot create \(path): \(String(cString: strerror(errno)))")
            }
            guard stat(path, &info) == 0 else {
                throw SupervisorError(.filesystem, "cannot inspect \(path): \(String(cString: strerror(errno)))")
            }
        }
        if let user = context.user, geteuid() == 0 {
            let group = context.dataGroup ?? user.gid
            // A shared folder is walked at every start: what others wrote in it (the deployment-service
            // restoring declared paths, the es-sidecar saving) becomes the service's own.
            if info.st_uid != user.uid || info.st_gid != group || context.dataGroup != nil {
                let count = try handOver(path, to: user.uid, group: group, name: user.name)
                if !created && count > 0 {
                    let before = ServiceUser.lookup(uid: info.st_uid)?.name ?? "uid \(info.st_uid)"
                    notes.append("moved \(path) (\(count) files) from \(info.st_uid == user.uid ? "other users" : before) to \(user.name)")
                }
            }
            let mode: mode_t = context.dataGroup == nil ? 0o700 : 0o2770
            guard chmod(path, mode) == 0 else {
                throw SupervisorError(.filesystem, "cannot set mode \(String(mode, radix: 8)) of \(path): \(String(cString: strerror(errno)))")
            }
        }
        if let key = context.gatewayKey {
            try GatewaySecrets.writeClientFile(key.credentials, to: key.path, user: geteuid() == 0 ? context.user : nil)
        }
        if let file = context.passphraseFile {
            try AtomicFile.write(file.passphrase + "\n", to: file.path, mode: 0o400, owner: geteuid() == 0 ? context.user : nil)
        }
        for copy in context.manifest.secretFiles {
            try SecretFileWriter.write(copy, owner: geteuid() == 0 ? context.user : nil)
        }
        return notes
    }

    /// Gives `root` and everything under it to a user and group (symbolic links themselves, never their
    /// targets); returns how many entries changed hands.
    static func handOver(_ root: String, to uid: uid_t, group: gid_t, name: String) throws -> Int {
        var count = 0
        try walk(root) { path, info in
            guard info.st_uid != uid || info.st_gid != group else { return }
            guard lchown(path, uid, group) == 0 else {
                throw SupervisorError(.filesystem, "cannot give \(path) to \(name): \(String(cString: strerror(errno)))")
            }
            count += 1
        }
        return count
    }

    /// Calls `body` for `root` and every entry below it, without following symbolic links.
    private static func walk(_ root: String, _ body: (String, stat) throws -> Void) throws {
        var info = stat()
        guard lstat(root, &info) == 0 else { return }
        try body(root, info)
        guard info.st_mode & S_IFMT == S_IFDIR else { return }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for entry in entries { try walk(root + "/" + entry, body) }
    }
}
