import Foundation

/// Where an operation is: running with its progress, or ended (completed with its result, failed with its
/// error, cancelled).
public enum ProgressState<Progress: Sendable, Result: Sendable>: Sendable {
    case running(Progress)
    case completed(Result)
    case failed(any Error)
    case cancelled

    /// True once the operation ended (completed, failed or cancelled).
    public var isTerminal: Bool {
        if case .running = self { return false }
        return true
    }
}

/// One operation as the registry knows it at one moment.
public struct ProgressSnapshot<Progress: Sendable, Result: Sendable>: Sendable {
    /// Unique among the registry's operations.
    public let id: String
    /// What it does (`backup`, `restore`, `snapshot`).
    public let kind: String
    /// What it was started with (a backup id, a service), as given to `start`.
    public let labels: [String: String]
    public let state: ProgressState<Progress, Result>
    /// The last progress reported (kept when it ends, so an ended operation still shows its items).
    public let progress: Progress
    public let startedAt: Date
    /// Set once it ended.
    public let finishedAt: Date?
    /// Increases with every change: a watcher can tell two snapshots apart and order them.
    public let revision: UInt64

    /// The result when completed.
    public var result: Result? {
        if case .completed(let r) = state { return r }
        return nil
    }

    /// The error when failed.
    public var error: (any Error)? {
        if case .failed(let e) = state { return e }
        return nil
    }

    public var isTerminal: Bool { state.isTerminal }
}

/// Where an operation reporting ``OperationProgress`` is.
public typealias OperationState<Result: Sendable> = ProgressState<OperationProgress, Result>

/// An operation reporting ``OperationProgress``, as its registry knows it at one moment.
public typealias OperationSnapshot<Result: Sendable> = ProgressSnapshot<OperationProgress, Result>

extension ProgressSnapshot where Result == Progress {
    /// For an operation whose result is its final status: that status once it completed, its progress before.
    public var status: Progress { result ?? progress }
}
