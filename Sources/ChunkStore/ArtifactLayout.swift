/// How an ``ArtifactWriter`` places chunk boundaries beyond content-defined chunking. A writer policy
/// only: readers need nothing, and the same bytes written with another layout restore the same.
public enum ArtifactLayout: Sendable, Equatable {
    /// Content-defined chunking alone (FastCDC over the whole stream).
    case stream
    /// The stream is a tar archive (ustar, GNU or pax, as `tar -cf -` writes it): every member whose
    /// data is at least ``ArtifactWriter/ownChunkMinimum`` (16 KiB) is chunked on its own — cuts are
    /// forced before its header blocks and right after its data and padding, and, for a member of at
    /// least the chunker's minimum, between its headers and its data — so a changed file does not spill
    /// into its neighbours' chunks (nor a large file's metadata change into its data's), while runs of
    /// tiny members and folders are chunked together by content. A stream that stops parsing as tar falls
    /// back to ``stream`` for the rest (see ``ArtifactWriter/layoutProblem``); nothing fails.
    case tar
}
