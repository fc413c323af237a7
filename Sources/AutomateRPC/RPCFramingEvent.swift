/// What the frame decoder tells the connection handler about bytes that are not a whole frame yet,
/// so that a connection holding a partial frame can be timed out (see `RPCServer.Configuration.idleTimeout`).
enum RPCFramingEvent: Sendable, Equatable {
    /// Bytes of a frame arrived and the frame is not complete.
    case partialFrameStarted
    /// The frame that was partial is complete (no byte of a next frame is held).
    case partialFrameCompleted
}
