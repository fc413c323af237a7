extension ManifestSet {
    /// The same set with some manifests replaced by name (for example after applying config overlays,
    /// which cannot change names or dependencies). Manifests whose name is not in the set are ignored.
    public func replacing(_ replacements: [ServiceManifest]) -> ManifestSet {
        let byName = Dictionary(replacements.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        return ManifestSet(services: services.map { byName[$0.name] ?? $0 })
    }
}
