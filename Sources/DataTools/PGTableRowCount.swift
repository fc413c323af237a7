/// The rows of one table: what a dump recorded (`PGCustomArchiveCounter`) and what a database holds
/// (`PGConnection.tableRowCounts()`), compared after a restore.
public struct PGTableRowCount: Sendable, Equatable, CustomStringConvertible {
    public var schema: String
    public var table: String
    public var rows: Int64

    public init(schema: String, table: String, rows: Int64) {
        self.schema = schema
        self.table = table
        self.rows = rows
    }

    /// Large objects, counted as a pseudo-table so that a restore that lost them fails the check.
    public static func largeObjects(_ count: Int64) -> PGTableRowCount {
        PGTableRowCount(schema: "pg_catalog", table: "pg_largeobject_metadata", rows: count)
    }

    public var description: String { "\(schema).\(table): \(rows)" }
}
