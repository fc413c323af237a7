import Foundation
import S3Client

/// What S3 keeps about an object besides its bytes and ETag: the standard content headers, the user
/// metadata (`x-amz-meta-*`) and, for an object completed from a multipart upload, its part sizes
/// (so `partNumber` reads can find a part's bytes).
struct ObjectMetadata: Codable, Sendable, Equatable {
    /// Standard headers kept with the object, by lowercased name (`content-type`, `cache-control`, ...).
    var headers: [String: String] = [:]
    /// User metadata by lowercased name without the `x-amz-meta-` prefix.
    var user: [String: String] = [:]
    /// Part sizes of a multipart object as runs: `[size, count]` pairs, in part order.
    var partRuns: [[Int]]?

    /// The standard headers S3 stores with an object and returns on GET/HEAD.
    static let storedHeaders = ["content-type", "content-encoding", "cache-control", "expires", "content-disposition", "content-language"]
    /// S3's limit on the user metadata of one object (names and values, in bytes).
    static let userLimit = 2048

    var isEmpty: Bool { headers.isEmpty && user.isEmpty && partRuns == nil }

    /// Metadata given with a PUT, CopyObject (REPLACE) or CreateMultipartUpload request.
    /// Throws `MetadataTooLarge` past S3's 2 KiB of user metadata.
    init(requestHeaders h: [String: String]) throws {
        for n in Self.storedHeaders {
            guard var v = h[n] else { continue }
            if n == "content-encoding" {
                // aws-chunked is the transfer framing of this request, not a property of the object.
                v = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && $0 != "aws-chunked" }
                    .joined(separator: ",")
                if v.isEmpty { continue }
            }
            headers[n] = v
        }
        var userBytes = 0
        for (k, v) in h where k.hasPrefix("x-amz-meta-") {
            let name = String(k.dropFirst("x-amz-meta-".count))
            user[name] = v
            userBytes += name.utf8.count + v.utf8.count
        }
        if userBytes > Self.userLimit {
            throw S3Error("MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size (2 KB of x-amz-meta-* names and values).")
        }
    }

    init() {}

    /// The part sizes, expanded.
    var partSizes: [Int]? {
        partRuns.map { runs in runs.flatMap { r in r.count == 2 ? Array(repeating: r[0], count: r[1]) : [] } }
    }

    /// Records part sizes compactly (clients upload equal parts, so this is one or two runs).
    mutating func setParts(_ sizes: [Int]) {
        var runs: [[Int]] = []
        for s in sizes {
            if let last = runs.last, last[0] == s { runs[runs.count - 1][1] += 1 } else { runs.append([s, 1]) }
        }
        partRuns = runs
    }

    /// Headers for a GET/HEAD answer: Content-Type (application/octet-stream when none was stored), the other
    /// stored headers with their usual capitalisation, and `x-amz-meta-*`.
    var responseHeaders: [(String, String)] {
        var out: [(String, String)] = [("Content-Type", headers["content-type"] ?? "application/octet-stream")]
        let names = ["content-encoding": "Content-Encoding", "cache-control": "Cache-Control", "expires": "Expires",
                     "content-disposition": "Content-Disposition", "content-language": "Content-Language"]
        for n in Self.storedHeaders.dropFirst() { if let v = headers[n] { out.append((names[n]!, v)) } }
        for (k, v) in user.sorted(by: { $0.key < $1.key }) { out.append(("x-amz-meta-" + k, v)) }
        return out
    }

    func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return Array((try? e.encode(self)) ?? Data("{}".utf8))
    }

    static func decode(_ bytes: [UInt8]) -> ObjectMetadata? { try? JSONDecoder().decode(ObjectMetadata.self, from: Data(bytes)) }
}
