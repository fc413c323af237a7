import Foundation

/// The process's standard output, as `print` writes it.
enum StandardOutput {
    /// Writes out what `print` has buffered (standard output is fully buffered when it is a pipe or a file).
    ///
    /// `fflush(nil)` flushes every output stream of the process; standard output is the only buffered one
    /// the CLI writes to (standard error is unbuffered). Glibc's `stdout` is a mutable C global, which the
    /// Swift 6 language mode does not let concurrent code read.
    static func flush() {
        fflush(nil)
    }
}
