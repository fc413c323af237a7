import Foundation
import S3Client

public struct SearchError: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var message: String
    public var description: String { status == 0 ? message : "search engine: HTTP \(status): \(message)" }

    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }
}

/// A blocking REST client for an OpenSearch/Elasticsearch-API engine (libcurl, no signing). Use it from a
/// thread of your own.
public struct SearchEngine: Sendable {
    public var url: String
    /// How a cluster outside the stack is reached: the CA of its https certificate and the
    /// `Authorization` header value (basic or API key). Both nil for the stack's own engine.
    public struct Access: Sendable, Equatable {
        public var caFile: String?
        public var authorization: String?

        public init(caFile: String? = nil, authorization: String? = nil) {
            self.caFile = caFile
            self.authorization = authorization
        }

        /// From `AUTOMATE_SEARCH_CA_FILE` and `AUTOMATE_SEARCH_AUTHORIZATION_FILE` (a file holding the
        /// header's value, written by the supervisor from `config/external.toml`); throws naming a file
        /// that cannot be read.
        public init(environment env: [String: String]) throws {
            func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
            caFile = value("AUTOMATE_SEARCH_CA_FILE")
            if let file = value("AUTOMATE_SEARCH_AUTHORIZATION_FILE") {
                do {
                    let text = try String(contentsOfFile: file, encoding: .utf8)
                    authorization = text.split(whereSeparator: \.isNewline).first.map(String.init)
                } catch {
                    throw SearchError(status: 0, message: "cannot read the search cluster's credentials \(file) (AUTOMATE_SEARCH_AUTHORIZATION_FILE): \(error.localizedDescription)")
                }
            }
        }
    }
    public var access: Access

    public init(url: String, access: Access = Access()) {
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        self.url = u
        self.access = access
    }

    /// One JSON request; returns the decoded answer (a dictionary or array), throws on non-2xx.
    @discardableResult
    public func json(_ method: String, _ path: String, body: Any? = nil, allow: Set<Int> = []) throws -> Any {
        let (status, bytes) = try raw(method, path, body: body.map { try JSONSerialization.data(withJSONObject: $0) }.map(Array.init), contentType: "application/json")
        if !(200..<300).contains(status) && !allow.contains(status) {
            throw SearchError(status: status, message: Self.reason(bytes) ?? String(decoding: bytes.prefix(500), as: UTF8.self))
        }
        if bytes.isEmpty { return [String: Any]() }
        return try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    }

    public func raw(_ method: String, _ path: String, body: [UInt8]?, contentType: String) throws -> (Int, [UInt8]) {
        var headers: [(String, String)] = [("Accept", "application/json")]
        if body != nil { headers.append(("Content-Type", contentType)) }
        if let authorization = access.authorization { headers.append(("Authorization", authorization)) }
        var req = HTTPRequest(method: method, url: url + path, headers: headers, body: body.map { .bytes($0) } ?? .none, timeoutSeconds: 300)
        req.caFile = access.caFile
        do {
            let r = try performHTTP(req)
            return (r.status, r.body)
        } catch let e as HTTPTransportError {
            throw SearchError(status: 0, message: "cannot reach the search engine at \(url): \(e.message)")
        }
    }

    static func reason(_ bytes: [UInt8]) -> String? {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return nil }
        if let e = obj["error"] as? [String: Any] {
            let type = e["type"] as? String ?? "error"
            return "\(type): \(e["reason"] as? String ?? "")"
        }
        if let e = obj["error"] as? String { return e }
        return nil
    }

    public func indexExists(_ index: String) throws -> Bool {
        let (status, _) = try raw("HEAD", "/" + uriEncode(index), body: nil, contentType: "")
        return status == 200
    }

    /// Non-hidden index names, sorted.
    public func listIndices() throws -> [String] {
        let rows = try json("GET", "/_cat/indices?format=json&h=index") as? [[String: Any]] ?? []
        return rows.compactMap { $0["index"] as? String }.filter { !$0.hasPrefix(".") }.sorted()
    }

    public func count(_ index: String) throws -> Int64 {
        let r = try json("GET", "/\(uriEncode(index))/_count") as? [String: Any]
        return (r?["count"] as? NSNumber)?.int64Value ?? 0
    }

    /// The index's user settings (engine-managed keys removed, so they can be given to create) and mappings.
    public func definition(_ index: String) throws -> (settings: [String: Any], mappings: [String: Any]) {
        guard let all = try json("GET", "/" + uriEncode(index)) as? [String: Any], let def = all[index] as? [String: Any] else {
            throw SearchError(status: 404, message: "index \(index) not found")
        }
        var settings = (def["settings"] as? [String: Any]) ?? [:]
        if var idx = settings["index"] as? [String: Any] {
            for k in ["creation_date", "uuid", "version", "provided_name", "replication", "resize", "routing", "verified_before_close", "history"] {
                idx.removeValue(forKey: k)
            }
            settings["index"] = idx
        }
        return (settings, (def["mappings"] as? [String: Any]) ?? [:])
    }
}
