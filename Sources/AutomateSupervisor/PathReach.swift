import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whether a service's user can reach a file the supervisor starts for it (its program, its hooks), from
/// the permission bits of the file and of every folder above it, checked the way the kernel checks them:
/// the owner's bits for the owner, else the group's for a member, else the others'. A clone under a
/// folder only root may enter (`/root` is 0700) fails here, at start-up, with the folder and the user
/// named, instead of as a hook's exit 126 in a crash loop.
///
/// Access control lists are not read: a folder that grants a user access only through an ACL is reported
/// unreachable (move the clone, or grant it with plain permissions).
public enum PathReach {
    /// What the user must be able to do with the file.
    public enum Need: Sendable {
        /// Run it: a program (execute permission).
        case execute
        /// Run it as a script: read and execute permission (hooks, which start with `#!`).
        case runScript
        /// Enter it: a folder (execute permission).
        case enter
    }

    /// Why `user` cannot reach `path` as `need` says, in one phrase naming the folder or file and its
    /// mode and owner; nil when it can (and for root, which reaches every file that is executable at all).
    public static func problem(_ path: String, for user: ServiceUser, need: Need) -> String? {
        guard path.hasPrefix("/") else { return nil }
        var folder = ""
        for component in path.split(separator: "/").dropLast() {
            folder += "/" + component
            guard let st = status(folder) else { return "\(folder) does not exist" }
            if !allows(st, user: user, bits: 0o1) {
                return "\(user.name) cannot enter \(folder) (\(describe(st)))"
            }
        }
        guard let st = status(path) else { return "\(path) does not exist" }
        switch need {
        case .execute:
            if !allows(st, user: user, bits: 0o1) { return "\(user.name) cannot execute \(path) (\(describe(st)))" }
        case .runScript:
            if !allows(st, user: user, bits: 0o5) { return "\(user.name) cannot read and execute \(path) (\(describe(st)))" }
        case .enter:
            if !allows(st, user: user, bits: 0o1) { return "\(user.name) cannot enter \(path) (\(describe(st)))" }
        }
        return nil
    }

    private static func status(_ path: String) -> stat? {
        var st = stat()
        return stat(path, &st) == 0 ? st : nil
    }

    /// Whether `user` has every permission of `bits` (r=4, w=2, x=1) on a file with status `st`.
    static func allows(_ st: stat, user: ServiceUser, bits: mode_t) -> Bool {
        let mode = st.st_mode
        if user.uid == 0 {
            // Root reads and enters anything; it executes a file only if some execute bit is set.
            let isFolder = (mode & S_IFMT) == S_IFDIR
            return bits & 0o1 == 0 || isFolder || mode & 0o111 != 0
        }
        let granted: mode_t
        if st.st_uid == user.uid {
            granted = (mode >> 6) & 0o7
        } else if st.st_gid == user.gid || user.groups.contains(st.st_gid) {
            granted = (mode >> 3) & 0o7
        } else {
            granted = mode & 0o7
        }
        return granted & bits == bits
    }

    /// `drwx------ root:root`.
    static func describe(_ st: stat) -> String {
        let mode = st.st_mode
        var text = (mode & S_IFMT) == S_IFDIR ? "d" : "-"
        for shift in [6, 3, 0] as [mode_t] {
            let part = (mode >> shift) & 0o7
            text += (part & 4 != 0 ? "r" : "-") + (part & 2 != 0 ? "w" : "-") + (part & 1 != 0 ? "x" : "-")
        }
        return "\(text) \(name(uid: st.st_uid)):\(name(gid: st.st_gid))"
    }

    private static func name(uid: uid_t) -> String { ServiceUser.lookup(uid: uid)?.name ?? String(uid) }

    private static func name(gid: gid_t) -> String {
        var entry = group()
        var result: UnsafeMutablePointer<group>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return String(gid) }
        return String(cString: entry.gr_name)
    }

    /// The executable files an argument list names by absolute path, inside other text too
    /// (`archive_command="/opt/automate/bin/automate-wal" archive %p %f`): what the service will run.
    static func programsNamed(in arguments: some Sequence<String>) -> [String] {
        var found: [String] = []
        for argument in arguments {
            for token in argument.split(whereSeparator: { $0 == "\"" || $0 == "'" || $0 == " " || $0 == "=" }) where token.hasPrefix("/") {
                let path = String(token)
                var info = stat()
                guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, (info.st_mode & 0o111) != 0, !found.contains(path) else { continue }
                found.append(path)
            }
        }
        return found
    }

    /// For each service that runs as a user of its own: why that user cannot reach the home's data folder
    /// (`dataDirectory`), its program or one of its hooks, one line each (the first folder or file in the
    /// way), without repeats. `contexts` are the ones its runners start it with.
    public static func problems(contexts: [ServiceContext], dataDirectory: String) -> [String] {
        var found: [String] = []
        for context in contexts {
            guard let user = context.user, user.uid != 0 else { continue }
            let name = context.manifest.name
            // The data folders are the supervisor's to make and hand over; the way to them must be open.
            var files: [(String, Need)] = [(dataDirectory, .enter)]
            if let program = context.manifest.command.first, program.hasPrefix("/") { files.append((program, .execute)) }
            // Programs the service runs itself, named in its arguments (PostgreSQL's archive_command).
            for program in programsNamed(in: context.manifest.command.dropFirst()) where !files.contains(where: { $0.0 == program }) {
                files.append((program, .execute))
            }
            let hooks = context.hooks.hooksDirectory + "/" + (context.manifest.hooks.folder ?? name)
            for hook in ((try? FileManager.default.contentsOfDirectory(atPath: hooks)) ?? []).sorted() where !hook.hasPrefix(".") {
                files.append((hooks + "/" + hook, .runScript))
            }
            for (file, need) in files {
                guard let problem = problem(file, for: user, need: need) else { continue }
                if !found.contains(where: { $0.hasSuffix(": " + problem) }) {
                    found.append("\(name) runs as \(user.name), who cannot reach \(file): \(problem)")
                }
            }
        }
        return found
    }
}
