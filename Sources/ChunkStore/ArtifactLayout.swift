/// How an ``ArtifactWriter`` places chunk boundaries beyond content-defined chunking. A writer policy
/// only: readers need nothing, and the same bytes written with another layout restore the same.
public enum ArtifactLayout: Sendable, Equatable {
    /// Content-defined chunking alone (FastCDC over the whole stream).
    case stream
    /// The stream is a tar archive (ustar, GNU or pax, as `tar -cf -` writes it): every member whose
    /// data is at least the chunker's minimum is chunked on its own — cuts are forced before its header
    /// blocks, between them and its data, and right after its data and padding — so a changed large file
    /// does not spill into its neighbours' chunks (nor a change of its metadata into its data's), while
    /// runs of small members are chunked together by content. A stream that stops parsing as tar falls
    /// back to ``stream`` for the rest (see ``ArtifactWriter/layoutProblem``); nothing fails.
    case tar
}
