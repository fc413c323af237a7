import Foundation

/// Runs jobs one after another, in the order they are appended, without holding a thread while one waits for
/// the previous.
///
/// An upload's MD5 must see its bytes in order, so its hashing jobs form a chain. Its writes form another: a
/// file written by several threads at once makes them queue on the file's lock in the kernel, where they spin
/// (ten part uploads writing into one multipart assembly cost 2 to 5 times the CPU per byte of the same writes
/// made one at a time, on ext4 here). So each upload's own file has a chain, and the part uploads of one
/// multipart upload share their assembly's (``AssemblyRegistry/writes(dir:)``).
final class JobChain: @unchecked Sendable {
    // `last` is only touched with `lock` held.
    private let lock = NSLock()
    private var last: Task<Void, any Error>?

    /// Runs `body` once every job appended before it has ended (whether or not it failed); the task ends with
    /// `body`'s result.
    func append(_ body: @escaping @Sendable () async throws -> Void) -> Task<Void, any Error> {
        lock.withLock {
            let previous = last
            let job = Task {
                _ = await previous?.result
                try await body()
            }
            last = job
            return job
        }
    }
}
