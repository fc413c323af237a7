extension BlobID {
    /// The object key of the pack this id names (`data/<xx>/<id>`), for callers that report on packs.
    public var packKey: String { Pack.key(self) }
}
