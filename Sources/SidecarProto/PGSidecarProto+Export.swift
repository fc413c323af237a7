// The pg-sidecar's messages and method descriptors live in their own small target (PGSidecarProto), so
// that `automate-wal` links them without the rest of this one; users of SidecarProto see them as before.
@_exported import PGSidecarProto
