import ArgumentParser

/// An error the CLI reports as one plain line (and a non-zero exit), saying what to do.
public struct CLIError: Error, CustomStringConvertible {
    public let message: String
    public let exitCode: Int32

    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { message }
}

extension CLIError {
    /// The supervisor of `home` is not running.
    static func notRunning(_ home: String) -> CLIError {
        CLIError("the supervisor is not running for \(home): run `automate start`", exitCode: 3)
    }
}

extension CLIError {
    /// Runs `body`, reporting any error but a CLIError as one (exit `exitCode`).
    static func reporting<T>(exitCode: Int32 = 1, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(error)", exitCode: exitCode)
        }
    }
}
