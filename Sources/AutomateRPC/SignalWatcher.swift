import Dispatch
import Foundation

/// Delivers the given signals to a closure instead of their default action (dispatch sources, so the
/// handler runs as ordinary code, not in signal context).
public final class SignalWatcher: @unchecked Sendable {  // the sources are only read after init
    private let sources: [any DispatchSourceSignal]

    public init(signals: [Int32], queue: DispatchQueue = .global(), handler: @escaping @Sendable (Int32) -> Void) {
        var sources: [any DispatchSourceSignal] = []
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { handler(number) }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    /// Stops watching (the signals stay ignored).
    public func cancel() {
        for source in sources { source.cancel() }
    }
}
