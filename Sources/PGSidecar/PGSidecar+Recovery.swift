import ArtifactStorage
import AutomateRPC
import BackupRepository
import Crypto
import DataTools
import Foundation
import Operations
import SidecarProto

/// The pg-sidecar's part of a point-in-time recovery: the base backup's tar read back for the cluster
/// server's init hook (`automate-wal base-backup`, extracted into its empty data folder), and the
/// server's recovery progress for the deployment-service, which waits for the promotion before it
/// relaunches the rest of the stack. WAL itself comes back through ``fetchWAL(name:cluster:)``.
extension PGSidecar {
    /// Bytes per piece of a streamed base backup.
    static let basePieceSize = 1 << 20

    /// The base backup `backupID`/`service` recorded: its metadata, checked to parse.
    func baseBackupMetadata(backupID: String, service: String) throws -> PGBaseBackupMetadata {
        guard Self.validID(backupID) else { throw RPCError(.invalidArgument, "backup_id \"\(backupID)\" is not yyyyMMddHHmmss") }
        guard Self.validName(service) else { throw RPCError(.invalidArgument, "service \"\(service)\" is not a service name") }
        let key = basePrefix(backupID: backupID, service: service) + "metadata.json"
        guard let bytes = try readObject(key) else {
            throw RPCError(.notFound, "backup \(backupID) has no base backup of \(service) (\(key)): it was taken with archiving off, or is not in this repository")
        }
        do {
            return try JSONDecoder().decode(PGBaseBackupMetadata.self, from: Data(bytes))
        } catch {
            throw RPCError(.dataLoss, "\(key) does not parse: \(error)")
        }
    }

    /// Reads the base backup's tar into `relay`, in order, in pieces of ``basePieceSize``: a plain one
    /// decompressed and its object's SHA-256 checked at the end, a chunked one checked chunk by chunk
    /// and as a whole against its record. Throws (after the bytes sent so far) when a check fails.
    func readBaseBackup(backupID: String, service: String, into relay: ByteRelay) throws {
        let metadata = try baseBackupMetadata(backupID: backupID, service: service)
        var piece: [UInt8] = []
        piece.reserveCapacity(Self.basePieceSize)
        var tarBytes: Int64 = 0
        let emit: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            var rest = bytes[...]
            while !rest.isEmpty {
                let take = min(rest.count, Self.basePieceSize - piece.count)
                piece.append(contentsOf: rest.prefix(take))
                rest = rest.dropFirst(take)
                if piece.count == Self.basePieceSize {
                    try relay.send(piece)
                    piece.removeAll(keepingCapacity: true)
                }
            }
            tarBytes += Int64(bytes.count)
        }
        do {
            let reader = artifacts.reader()
            if let chunks = metadata.chunks {
                _ = try reader.read(key: metadata.key, chunks: chunks, into: emit)
            } else {
                var hash = SHA256()
                let zstd = try ZstdDecompressor(output: emit)
                _ = try reader.read(key: metadata.key, chunks: nil) { stored in
                    hash.update(bufferPointer: stored)
                    try zstd.decompress(stored)
                }
                try zstd.finish()
                let digest = hex(hash.finalize())
                guard digest == metadata.sha256 else {
                    throw RPCError(.dataLoss, "\(metadata.key) has sha256 \(digest); its metadata.json says \(metadata.sha256): the base backup is damaged")
                }
            }
            guard tarBytes == metadata.tarBytes else {
                throw RPCError(.dataLoss, "\(metadata.key) read back as \(tarBytes) bytes of tar; its metadata.json says \(metadata.tarBytes)")
            }
            if !piece.isEmpty { try relay.send(piece) }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Self.walRPCError(error, doing: "reading the base backup of \(service) in \(backupID)")
        }
    }

    /// The server's recovery state: in recovery or not, the last WAL record and transaction replayed,
    /// its timeline. `UNAVAILABLE` while the server does not take connections yet (before it reached a
    /// consistent state).
    func clusterRecovery() throws -> Automate_Sidecar_Pg_PGClusterRecovery {
        let c: PGConnection
        do { c = try PGConnection(config.server, database: "postgres") } catch {
            throw RPCError(.unavailable, "the database server does not take connections yet: \(error)")
        }
        let rows = try c.query("""
            SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, ''),
                   coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
                   CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
                        ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
                   (SELECT system_identifier::text FROM pg_control_system())
            """)
        guard let row = rows.first, row.count == 5 else { throw RPCError(.internal, "the recovery query returned no row") }
        var r = Automate_Sidecar_Pg_PGClusterRecovery()
        r.inRecovery = row[0] == "t"
        r.replayLsn = row[1] ?? ""
        r.lastTransactionAt = row[2] ?? ""
        r.timeline = UInt32(row[3] ?? "") ?? 0
        r.cluster = row[4] ?? ""
        return r
    }
}
