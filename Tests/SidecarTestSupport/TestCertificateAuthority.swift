import Foundation

/// A certificate authority made for one test with openssl (EC P-256, two days), which signs server
/// certificates for `localhost` and 127.0.0.1.
public struct TestCertificateAuthority: Sendable {
    public let folder: String
    public let name: String
    /// The CA's certificate (what clients trust).
    public var certificate: String { folder + "/\(name).pem" }
    var key: String { folder + "/\(name).key" }

    /// Makes the CA `<folder>/<name>.pem` (the folder is created).
    public init(folder: String, name: String) throws {
        self.folder = folder
        self.name = name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                          "-subj", "/CN=\(name)", "-keyout", key, "-out", certificate])
    }

    /// A server certificate and key for `localhost` and 127.0.0.1 signed by this CA, as
    /// `<folder>/<prefix>.crt` and `.key` (0600).
    public func issueServerCertificate(folder: String, prefix: String) throws -> (certificate: String, key: String) {
        let cert = folder + "/\(prefix).crt", serverKey = folder + "/\(prefix).key", request = folder + "/\(prefix).csr"
        let ext = folder + "/\(prefix).ext"
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(toFile: ext, atomically: true, encoding: .utf8)
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
                          "-keyout", serverKey, "-out", request])
        try Self.openssl(["x509", "-req", "-in", request, "-CA", certificate, "-CAkey", key, "-CAcreateserial", "-days", "2",
                          "-extfile", ext, "-out", cert])
        return (cert, serverKey)
    }

    /// A client certificate for `commonName` (PostgreSQL's `cert` authentication takes the user from it)
    /// and its key (0600), signed by this CA, as `<folder>/<prefix>.crt` and `.key`.
    public func issueClientCertificate(folder: String, prefix: String, commonName: String) throws -> (certificate: String, key: String) {
        let cert = folder + "/\(prefix).crt", clientKey = folder + "/\(prefix).key", request = folder + "/\(prefix).csr"
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=\(commonName)",
                          "-keyout", clientKey, "-out", request])
        try Self.openssl(["x509", "-req", "-in", request, "-CA", certificate, "-CAkey", key, "-CAcreateserial", "-days", "2", "-out", cert])
        chmod(clientKey, 0o600)
        return (cert, clientKey)
    }

    static func openssl(_ arguments: [String]) throws {
        try Fixture.run("/usr/bin/openssl", arguments)
    }
}
