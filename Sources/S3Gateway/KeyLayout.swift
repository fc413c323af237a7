import Foundation
import S3Client
#if canImport(Glibc)
import Glibc
#endif

/// Where an object's bytes live in a bucket folder. A key is its path (`a/b/c` is the file `a/b/c`), except
/// in the two cases a plain file cannot express:
///
/// - a key that is also a folder of other keys (`a` while `a/b` exists): the file `a/.automate-object`;
/// - a key ending in `/` (a folder marker, usually empty): the file `a/.automate-folder`.
///
/// Both names are hidden and reserved, so `ls` of a repository still shows its keys as files and folders.
/// When a write needs a folder where a plain file is (`a/b` arrives after `a`), the file moves into the new
/// folder as `.automate-object`; when the folder's last other key goes, it moves back to a plain file. A move
/// goes through the hidden name `.automate-moving-<name>` beside it, which any later access of that key (or
/// a listing of its folder) completes if a crash interrupted it.
enum KeyLayout {
    static let selfObject = ".automate-object"
    static let folderMarker = ".automate-folder"
    static let movingPrefix = ".automate-moving-"

    /// The file holding a key's bytes (it may not exist). The key must have passed `FSStore.validateKey`.
    static func file(bucket: String, key: String) -> String {
        if key.hasSuffix("/") { return bucket + "/" + key + folderMarker }
        let p = bucket + "/" + key
        if let i = statPath(p) {
            guard i.isDir else { return p }
            let inner = p + "/" + selfObject
            if statPath(inner) != nil { return inner }
            // A folder without its own object: a move into or out of it that is running (recoverMove waits
            // for it) or that a crash interrupted (recoverMove completes it).
            recoverMove(p)
            return relocated(inner)
        }
        recoverMove(p)
        return statPath(p)?.isDir == true ? p + "/" + selfObject : p
    }

    /// The name `CommitLock` takes for changes to the object at `file`. A key's object moves between `a` and
    /// `a/.automate-object`, so both lock `a`; the moves themselves (`moveIntoFolder`, `moveOutOfFolder`,
    /// `recoverMove`) hold the same lock, so a write or delete under it sees the object where it is.
    static func lockName(_ file: String) -> String {
        file.hasSuffix("/" + selfObject) ? String(file.dropLast(selfObject.utf8.count + 1)) : file
    }

    /// Where the object that `file` named when it was resolved is now, after a move into or out of its
    /// folder that ran meanwhile. Stable while `lockName(file)` is held.
    static func relocated(_ file: String) -> String {
        if file.hasSuffix("/" + selfObject) {
            let base = lockName(file)
            return statPath(base)?.isFile == true ? base : file
        }
        return statPath(file)?.isDir == true ? file + "/" + selfObject : file
    }

    /// Makes the folders a write of `key` needs (moving plain files in the way into their folder) and
    /// returns the file to rename the new object to.
    static func prepareWrite(bucket: String, key: String, metadata: MetadataStore) throws -> String {
        var segs = key.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        segs.removeLast() // the object's own name ("" for a folder marker)
        var dir = bucket
        for s in segs {
            dir += "/" + s
            try ensureFolder(dir, metadata: metadata)
        }
        return file(bucket: bucket, key: key)
    }

    /// A folder at `path`: made if missing; a plain file there (an object) moves inside as `.automate-object`.
    static func ensureFolder(_ path: String, metadata: MetadataStore) throws {
        for _ in 0..<5 {
            if mkdir(path, 0o755) == 0 { return }
            let e = errno
            if e == EEXIST {
                if statPath(path)?.isDir == true { return }
                try CommitLock.withLock(path) { try moveIntoFolder(path, metadata: metadata) }
                continue
            }
            if e == ENOENT {
                // A concurrent delete pruned the parent: make it again.
                try ensureFolder(parentPath(path), metadata: metadata)
                continue
            }
            throw S3Error("InternalError", 500, "mkdir \(path): \(errnoText())")
        }
        throw S3Error("InternalError", 500, "mkdir \(path): the folder keeps changing under concurrent writes; retry")
    }

    static func movingPath(_ path: String) -> String {
        let parent = parentPath(path)
        return parent + "/" + movingPrefix + lastComponent(path)
    }

    /// `a` (a file) becomes `a/.automate-object`.
    static func moveIntoFolder(_ path: String, metadata: MetadataStore) throws {
        guard statPath(path)?.isFile == true else { return }
        let moving = movingPath(path)
        guard rename(path, moving) == 0 else { throw S3Error("InternalError", 500, "rename \(path): \(errnoText())") }
        let (_, oldSide) = MetadataStore.sidePath(path)
        guard mkdir(path, 0o755) == 0 || statPath(path)?.isDir == true else {
            rename(moving, path)
            throw S3Error("InternalError", 500, "mkdir \(path): \(errnoText())")
        }
        moveSideFile(from: oldSide, to: path + "/" + selfObject)
        guard rename(moving, path + "/" + selfObject) == 0 else { throw S3Error("InternalError", 500, "rename into \(path): \(errnoText())") }
        fsyncDir(path)
        fsyncDir(parentPath(path))
    }

    /// After a delete in folder `dir`: a folder left holding only its own object becomes that plain file
    /// again. Returns whether it did.
    @discardableResult
    static func moveOutOfFolder(_ dir: String) -> Bool {
        CommitLock.withLock(dir) {
            guard let names = listDir(dir), names.contains(selfObject),
                  names.allSatisfy({ $0 == selfObject || $0 == MetadataStore.sideFolder }) else { return false }
            if names.contains(MetadataStore.sideFolder) {
                let side = dir + "/" + MetadataStore.sideFolder
                guard let entries = listDir(side), entries.allSatisfy({ $0 == selfObject }) else { return false }
            }
            let moving = movingPath(dir)
            guard rename(dir + "/" + selfObject, moving) == 0 else { return false }
            let sideFile = dir + "/" + MetadataStore.sideFolder + "/" + selfObject
            moveSideFile(from: sideFile, to: dir)
            if rmdir(dir) != 0, statPath(dir)?.isDir == true {
                // Something arrived meanwhile: put the object (and its metadata) back.
                moveSideFile(from: MetadataStore.sidePath(dir).file, to: dir + "/" + selfObject)
                if rename(moving, dir + "/" + selfObject) != 0 { recoverMove(dir, locked: true) }
                return false
            }
            // The folder is gone (removed here, or pruned while empty): the object takes its place. A folder
            // made there in between (a write of `dir/x`) takes the object in instead.
            if rename(moving, dir) != 0 { recoverMove(dir, locked: true) }
            fsyncDir(parentPath(dir))
            return true
        }
    }

    /// Moves a side-folder metadata file along with its object (entries are keyed by inode, which a rename keeps).
    static func moveSideFile(from oldSide: String, to objectPath: String) {
        guard statPath(oldSide) != nil else { return }
        let (dir, side) = MetadataStore.sidePath(objectPath)
        // The side folder may be removed (it was empty) between its mkdir and the rename: make it again.
        for _ in 0..<5 {
            mkdir(dir, 0o755)
            if rename(oldSide, side) == 0 {
                rmdir(parentPath(oldSide))
                return
            }
            guard errno == ENOENT, statPath(oldSide) != nil else { return }
        }
    }

    /// Completes a move a crash interrupted: `.automate-moving-<name>` beside `path` goes to `path` (no
    /// folder there) or into the folder `path`.
    /// `locked`: the caller holds `CommitLock` for `path` already.
    static func recoverMove(_ path: String, locked: Bool = false) {
        let moving = movingPath(path)
        guard statPath(moving)?.isFile == true else { return }
        func complete() {
            guard statPath(moving)?.isFile == true else { return }
            if let i = statPath(path), i.isDir {
                if statPath(path + "/" + selfObject) == nil {
                    moveSideFile(from: MetadataStore.sidePath(path).file, to: path + "/" + selfObject)
                    rename(moving, path + "/" + selfObject)
                }
            } else if statPath(path) == nil {
                rename(moving, path)
            }
        }
        if locked { complete() } else { CommitLock.withLock(path) { complete() } }
    }
}
