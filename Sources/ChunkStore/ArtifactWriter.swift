import Foundation

/// Writes one artifact into a ``ChunkedWriter`` session: feed it bytes as they come with
/// ``write(_:)-([UInt8])``, then ``finish()`` for its ``ArtifactRecord``.
///
/// The caller's thread finds chunk boundaries, copies each chunk once into a reused buffer and names it
/// (HMAC-SHA256); sealing threads of the artifact's own (``SealingQueue``) dedup, compress, encrypt and
/// pack the chunks, so chunking and sealing run on two cores, and sealing on both while chunking waits. With ``ArtifactLayout/tar`` the caller's thread
/// also follows the tar stream's headers (``TarStreamBoundaries``) to force cuts around large members.
///
/// Use from one thread at a time. Memory: up to ``SealingQueue/limit`` + 3 chunk buffers of the
/// maximum chunk size, and with the tar layout up to ``holdLimit`` of header bytes.
public final class ArtifactWriter {
    /// The artifact's name.
    public let name: String
    /// Where chunk boundaries go besides content-defined ones.
    public let layout: ArtifactLayout
    private let session: ChunkedWriter
    private let masterKey: MasterKey
    private var chunker: Chunker
    private var current: ChunkBuffer
    private let sealing: SealingQueue
    private var finished = false

    // The tar layout: the parser (nil once it ended or failed), the header bytes of the member being
    // read (held back from the chunker until its size says whether a cut goes before them), and whether
    // the member whose data is passing gets a cut after it.
    private var tar: TarStreamBoundaries?
    private var held: [UInt8] = []
    private var holding = false
    private var largeMember = false

    /// A member's header blocks (with its pax and long-name headers) beyond this are not held back: no
    /// cut is forced before such a member.
    public static let holdLimit = 1 << 20

    /// Bytes written so far.
    public private(set) var size: Int64 = 0
    /// Plaintext bytes of chunks stored so far (new to the repository).
    public private(set) var newBytes: Int64 = 0
    /// Plaintext bytes of chunks found already stored so far.
    public private(set) var reusedBytes: Int64 = 0
    /// Sealed bytes added to packs so far.
    public private(set) var storedBytes: Int64 = 0
    /// Cuts the layout forced so far (chunks ended before their content-defined end).
    public private(set) var layoutCuts = 0
    /// Tar members whose headers were read so far (``ArtifactLayout/tar``).
    public var tarMembers: Int { tar?.members ?? tarMembersSeen }
    private var tarMembersSeen = 0
    /// Why the writer stopped following the layout, when it did (nil otherwise, and always with
    /// ``ArtifactLayout/stream``): the stream stopped parsing as tar at the offset the message names, and
    /// the rest was chunked by content alone. Nothing is lost — the artifact restores byte for byte — but
    /// dedup may be worse; worth a log line.
    public private(set) var layoutProblem: String?

    init(session: ChunkedWriter, name: String, layout: ArtifactLayout) throws {
        self.session = session
        self.name = name
        self.layout = layout
        masterKey = session.repository.masterKey
        chunker = Chunker(parameters: session.repository.config.chunker)
        current = ChunkBuffer(capacity: chunker.parameters.maximum)
        if layout == .tar { tar = TarStreamBoundaries() }
        sealing = SealingQueue(session: session, name: name)
    }

    deinit {
        sealing.close()
    }

    /// Adds the next bytes of the artifact (any size; an empty buffer is fine).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !finished else { throw ChunkStoreError(.misuse, "artifact \(name) was already finished; start a new artifact to write more") }
        size += Int64(bytes.count)
        var rest = bytes
        while !rest.isEmpty {
            guard tar != nil else { return try chunk(rest) }
            let step = tar!.advance(rest)
            let passed = UnsafeRawBufferPointer(rebasing: rest[..<step.consumed])
            rest = UnsafeRawBufferPointer(rebasing: rest[step.consumed...])
            if holding {
                held.append(contentsOf: passed)
                if held.count > Self.holdLimit { try releaseHeld() }
            } else {
                try chunk(passed)
            }
            if let event = step.event { try follow(event) }
        }
    }

    /// Adds the next bytes of the artifact.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Stores the last chunk and returns the record. The record's blobs are durable once the session's
    /// ``ChunkedWriter/commit()`` returns.
    public func finish() throws -> ArtifactRecord {
        guard !finished else { throw ChunkStoreError(.misuse, "artifact \(name) was already finished") }
        try releaseHeld()
        if current.count > 0 { try emit() }
        chunker.startChunk()
        finished = true
        let sealed = try sealing.drain()
        newBytes = sealed.newBytes
        reusedBytes = sealed.reusedBytes
        storedBytes = sealed.storedBytes
        let digest = masterKey.artifactDigest(size: size, blobs: sealed.blobs).hex
        return ArtifactRecord(
            name: name, blobs: sealed.blobs, size: size, digest: digest, newBytes: newBytes, reusedBytes: reusedBytes, storedBytes: storedBytes)
    }

    // MARK: the tar layout

    /// The tar layout cuts a member of at least this many bytes of data off from its neighbours (smaller
    /// ones, and folders, are chunked together by content): 16 KiB, so that a file of any real size is
    /// deduplicated on its own, as restic stores each file, while a tree of tiny files does not become a
    /// chunk each.
    public static let ownChunkMinimum = 16 << 10

    private func follow(_ event: TarStreamBoundaries.Event) throws {
        switch event {
        case .headerStart:
            // The previous member's data and padding end here.
            if largeMember { try forceCut() }
            largeMember = false
            holding = true
        case .dataStart(let size):
            let large = size >= Int64(chunker.parameters.minimum)
            let own = size >= Int64(Self.ownChunkMinimum)
            // Its headers were held back. A member of at least ``ownChunkMinimum`` is cut off from its
            // neighbours (a rewritten file costs its own bytes, not a chunk of the files around it); a
            // large member's headers make a chunk of their own too (a change of metadata alone, or pax's
            // atime, leaves its data's chunks as they were), and its data starts the next chunk.
            if own, holding {
                try forceCut()
                try releaseHeld()
                if large { try forceCut() }
            } else {
                try releaseHeld()
            }
            largeMember = own
        case .end:
            try releaseHeld()
            tarMembersSeen = tar?.members ?? tarMembersSeen
            tar = nil
        case .failed(let problem):
            layoutProblem = problem
            try releaseHeld()
            tarMembersSeen = tar?.members ?? tarMembersSeen
            tar = nil
            largeMember = false
        }
    }

    /// Hands the held header bytes to the chunker.
    private func releaseHeld() throws {
        holding = false
        guard !held.isEmpty else { return }
        try held.withUnsafeBytes { try chunk($0) }
        held.removeAll(keepingCapacity: true)
    }

    /// Ends the chunk being formed here (if it has any bytes).
    private func forceCut() throws {
        guard current.count > 0 else { return }
        try emit()
        chunker.startChunk()
        layoutCuts += 1
    }

    // MARK: chunks

    /// Copies `bytes` into chunks, cutting where the content says.
    private func chunk(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while !rest.isEmpty {
            guard let n = chunker.nextCut(in: rest) else {
                current.append(rest)
                return
            }
            current.append(UnsafeRawBufferPointer(rebasing: rest[..<n]))
            try emit()
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    /// Names the chunk formed and hands it to the sealing thread.
    private func emit() throws {
        current.id = masterKey.blobID(of: current.bytes)
        let next = try sealing.enqueue(current)
        current = next ?? ChunkBuffer(capacity: chunker.parameters.maximum)
        let progress = sealing.progress
        newBytes = progress.newBytes
        reusedBytes = progress.reusedBytes
        storedBytes = progress.storedBytes
    }
}
