import S3Client

/// The S3 errors the gateway answers with (codes, statuses and messages as S3 words them).
extension S3Error {
    public static let noSuchKey = S3Error("NoSuchKey", 404, "The specified key does not exist.")
    public static let noSuchBucket = S3Error("NoSuchBucket", 404, "The specified bucket does not exist.")
    public static let noSuchUpload = S3Error("NoSuchUpload", 404, "The specified multipart upload does not exist.")
    public static let preconditionFailed = S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    public static let badDigest = S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    public static let invalidDigest = S3Error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
    public static let invalidPart = S3Error("InvalidPart", 400, "One or more of the specified parts could not be found.")
    public static let invalidPartOrder = S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order.")
    public static let entityTooSmall = S3Error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size.")
    public static let invalidRange = S3Error("InvalidRange", 416, "The requested range is not satisfiable")
    public static let accessDenied = S3Error("AccessDenied", 403, "Access Denied")
    public static let signatureMismatch = S3Error("SignatureDoesNotMatch", 403,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
    public static let invalidAccessKey = S3Error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")
    public static let timeSkewed = S3Error("RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large.")
    public static let bucketNotEmpty = S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty")
    public static let bucketExists = S3Error("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it.")
    public static let invalidBucketName = S3Error("InvalidBucketName", 400, "The specified bucket is not valid.")
    public static let keyTooLong = S3Error("KeyTooLongError", 400, "Your key is too long")
    public static let invalidKey = S3Error("InvalidArgument", 400, "Object key is not allowed by this gateway (empty, '.', '..' or reserved segment, absolute, or NUL).")
    public static let contentSHA256Mismatch = S3Error("XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed.")
    public static let incompleteBody = S3Error("IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
    public static let malformedXML = S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema.")
    public static let notImplemented = S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented.")
    public static let methodNotAllowed = S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
    public static let internalError = S3Error("InternalError", 500, "We encountered an internal error. Please try again.")
    public static let missingContentLength = S3Error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
    public static let badChecksum = S3Error("BadDigest", 400, "The checksum you specified did not match the calculated checksum.")
    public static let invalidRequest = S3Error("InvalidRequest", 400, "Invalid Request")
    public static let expired = S3Error("AccessDenied", 403, "Request has expired")
    public static func malformedAuth(_ m: String) -> S3Error { S3Error("AuthorizationHeaderMalformed", 400, m) }
    public static func invalidArgument(_ m: String) -> S3Error { S3Error("InvalidArgument", 400, m) }
}
