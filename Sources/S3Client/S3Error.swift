/// An S3 error, on either side of the wire: what the gateway answers with (rendered as S3's XML error
/// document by ``xml(requestId:)``), and what a client read from such a document (with the operation it
/// was doing). The stack has this one type for both, so an upstream's answer passes through the gateway,
/// and a gateway's answer reaches a caller, with the same code, status and message.
public struct S3Error: Error, CustomStringConvertible, Sendable, Equatable {
    /// S3's error code (`NoSuchKey`, `SignatureDoesNotMatch`, ...).
    public var code: String
    /// The HTTP status it comes with (0: no answer was received).
    public var status: Int
    public var message: String
    /// The bucket or key it is about, when the document names one.
    public var resource: String = ""
    /// What the client was doing (`GetObject 2026/x.tar.zst`); empty for an error the gateway answers with.
    public var operation: String = ""

    /// An error to answer with.
    public init(_ code: String, _ status: Int, _ message: String) {
        self.code = code; self.status = status; self.message = message
    }

    /// An error a client got doing `operation`.
    public init(status: Int, code: String, message: String, operation: String) {
        self.code = code; self.status = status; self.message = message; self.operation = operation
    }

    public var description: String {
        operation.isEmpty ? "\(code) (\(status)): \(message)" : "S3 \(operation): \(status) \(code): \(message)"
    }

    /// Whether the bucket or key does not exist.
    public var isNotFound: Bool { status == 404 || code == "NoSuchKey" || code == "NoSuchBucket" }

    /// The same error with another message.
    public func with(message: String) -> S3Error { var e = self; e.message = message; return e }

    /// S3's XML error document for this error.
    public func xml(requestId: String) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>\(XML.escape(code))</Code><Message>\(XML.escape(message))</Message>"
            + (resource.isEmpty ? "" : "<Resource>\(XML.escape(resource))</Resource>")
            + "<RequestId>\(XML.escape(requestId))</RequestId></Error>"
    }

    /// The error an S3 answer's document names (`<Code>`, `<Message>`, `<Resource>`), or one made of its
    /// status when the body is not such a document.
    public static func parse(status: Int, body: String, operation: String) -> S3Error {
        let code = XML.first("Code", in: Substring(body)) ?? (status == 404 ? "NotFound" : "HTTP\(status)")
        let message = XML.first("Message", in: Substring(body)) ?? (body.isEmpty ? "HTTP status \(status)" : String(body.prefix(300)))
        var e = S3Error(status: status, code: code, message: message, operation: operation)
        e.resource = XML.first("Resource", in: Substring(body)) ?? ""
        return e
    }
}
