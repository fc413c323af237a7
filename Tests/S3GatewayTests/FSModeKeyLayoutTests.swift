import Foundation
import XCTest
@testable import S3Gateway
#if canImport(Glibc)
import Glibc
#endif

/// Keys that are both a file and a folder, folder markers, and listings in S3 byte order.
final class FSModeKeyLayoutTests: XCTestCase {
    static let fileAndFolderScript = """
    B = 'repo'
    bucket_dir = sys.argv[3]
    import os
    s3.put_object(Bucket=B, Key='fk/a', Body=b'file a', ContentType='text/x-a', Metadata={'who': 'a'})
    s3.put_object(Bucket=B, Key='fk/a/b', Body=b'file a/b')
    assert os.path.isfile(bucket_dir + '/fk/a/.automate-object') and os.path.isfile(bucket_dir + '/fk/a/b')
    s3.put_object(Bucket=B, Key='fk/a/', Body=b'')            # folder marker of a folder with keys
    s3.put_object(Bucket=B, Key='fk/a!', Body=b'bang')        # sorts between 'fk/a' and 'fk/a/'
    s3.put_object(Bucket=B, Key='fk/c/', Body=b'')            # a lone folder marker
    s3.put_object(Bucket=B, Key='fk/d', Body=b'plain')        # a plain key stays a plain file
    assert os.path.isfile(bucket_dir + '/fk/d') and sorted(n for n in os.listdir(bucket_dir + '/fk') if not n.startswith('.')) == ['a', 'a!', 'c', 'd']
    g = s3.get_object(Bucket=B, Key='fk/a')
    assert g['Body'].read() == b'file a' and g['Metadata'] == {'who': 'a'} and g['ContentType'] == 'text/x-a', g
    assert s3.get_object(Bucket=B, Key='fk/a/b')['Body'].read() == b'file a/b'
    assert s3.head_object(Bucket=B, Key='fk/c/')['ContentLength'] == 0
    keys = [o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='fk/')['Contents']]
    assert keys == ['fk/a', 'fk/a!', 'fk/a/', 'fk/a/b', 'fk/c/', 'fk/d'], keys
    r = s3.list_objects_v2(Bucket=B, Prefix='fk/', Delimiter='/')
    assert [o['Key'] for o in r['Contents']] == ['fk/a', 'fk/a!', 'fk/d'], r
    assert [p['Prefix'] for p in r['CommonPrefixes']] == ['fk/a/', 'fk/c/'], r
    r = s3.list_objects_v2(Bucket=B, Prefix='fk/a/', Delimiter='/')
    assert [o['Key'] for o in r['Contents']] == ['fk/a/', 'fk/a/b'] and 'CommonPrefixes' not in r, r
    # A folder without a marker is not an object.
    assert code(s3.head_object, Bucket=B, Key='fk/') == ('404', 404)
    # The folder's last other keys go: 'fk/a' is a plain file again, with its metadata.
    s3.delete_objects(Bucket=B, Delete={'Objects': [{'Key': 'fk/a/b'}, {'Key': 'fk/a/'}, {'Key': 'fk/c/'}]})
    assert os.path.isfile(bucket_dir + '/fk/a') and not os.path.exists(bucket_dir + '/fk/c'), os.listdir(bucket_dir + '/fk')
    g = s3.get_object(Bucket=B, Key='fk/a')
    assert g['Body'].read() == b'file a' and g['Metadata'] == {'who': 'a'}, g
    assert [o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='fk/')['Contents']] == ['fk/a', 'fk/a!', 'fk/d']
    # Copy and multipart onto a key that is a folder.
    s3.put_object(Bucket=B, Key='fk/d/e', Body=b'e')
    s3.copy_object(Bucket=B, Key='fk/d', CopySource={'Bucket': B, 'Key': 'fk/a'})
    assert s3.get_object(Bucket=B, Key='fk/d')['Body'].read() == b'file a'
    u = s3.create_multipart_upload(Bucket=B, Key='fk/d/')['UploadId']
    p = s3.upload_part(Bucket=B, Key='fk/d/', UploadId=u, PartNumber=1, Body=b'')['ETag']
    s3.complete_multipart_upload(Bucket=B, Key='fk/d/', UploadId=u, MultipartUpload={'Parts': [{'PartNumber': 1, 'ETag': p}]})
    assert [o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='fk/d')['Contents']] == ['fk/d', 'fk/d/', 'fk/d/e']
    """

    func runFileAndFolder(_ storage: MetadataStorage) async throws {
        let fx = try await FSFixture.start(metadataStorage: storage)
        defer { Task { await fx.stop() } }
        try await runBoto3(Self.fileAndFolderScript, endpoint: fx.endpoint, args: [fx.bucketDir])
        // awscli sees the same keys.
        let ls = try await fx.awsOK(["s3", "ls", "s3://repo/fk/", "--recursive"])
        XCTAssertEqual(ls.split(separator: "\n").map { String($0.split(separator: " ", maxSplits: 3).last!) },
                       ["fk/a", "fk/a!", "fk/d", "fk/d/", "fk/d/e"])
        try await fx.awsOK(["s3", "rm", "s3://repo/fk", "--recursive", "--only-show-errors"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: fx.bucketDir + "/fk"))
        fx.assertNoLeftovers()
    }

    func testFileAndFolderKeysWithXattrs() async throws { try await runFileAndFolder(.automatic) }

    /// Deletes (and reads) of a key's neighbours run at once, as `aws s3 rm --recursive` sends them: the
    /// move of `a/.automate-object` back to the file `a` that one delete makes must not hide `a` from
    /// another delete or a read running beside it (the delete answered 204 and `a` stayed).
    func testConcurrentDeletesOfFileAndFolderKeys() async throws {
        let fx = try await FSFixture.start(metadataStorage: .sideFolder)
        defer { Task { await fx.stop() } }
        try await runBoto3("""
        import os
        from concurrent.futures import ThreadPoolExecutor
        B = 'repo'
        bucket_dir = sys.argv[3]
        pool = ThreadPoolExecutor(8)
        keys = ['cd/a', 'cd/a!', 'cd/d', 'cd/d/', 'cd/d/e', 'cd/d/f/', 'cd/x/y', 'cd/x']
        for round in range(40):
            for k in keys:
                s3.put_object(Bucket=B, Key=k, Body=k.encode(), Metadata={'k': k.replace('/', '_')})
            # Reads of 'cd/d' and 'cd/x' while their folders' other keys go (they move back to plain files).
            def step(job):
                kind, k = job
                if kind == 'get':
                    assert s3.get_object(Bucket=B, Key=k)['Body'].read() == k.encode(), k
                else:
                    s3.delete_object(Bucket=B, Key=k)
            others = [('delete', k) for k in keys if k not in ('cd/d', 'cd/x')]
            list(pool.map(step, [('get', 'cd/d'), ('get', 'cd/x')] * 3 + (others[::-1] if round % 2 else others)))
            assert sorted(o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='cd/')['Contents']) == ['cd/d', 'cd/x']
            # Then every key at once.
            for k in keys:
                s3.put_object(Bucket=B, Key=k, Body=k.encode(), Metadata={'k': k.replace('/', '_')})
            list(pool.map(lambda k: s3.delete_object(Bucket=B, Key=k), reversed(keys) if round % 2 else keys))
            left = [o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='cd/').get('Contents', [])]
            assert left == [] and not os.path.exists(bucket_dir + '/cd'), (round, left, os.listdir(bucket_dir + '/cd'))
        """, endpoint: fx.endpoint, args: [fx.bucketDir])
        fx.assertNoLeftovers()
    }

    func testFileAndFolderKeysWithSideFolder() async throws { try await runFileAndFolder(.sideFolder) }

    func testListingsDelimitersAndEncoding() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        try await runBoto3("""
        B = 'repo'
        for k in ['dl/x-1', 'dl/x-2/y', 'dl/y', 'dl/x!z', 'dl/x/sub', 'dl/x', 'dl/x.txt', 'dl/x/sub-2']:
            s3.put_object(Bucket=B, Key=k, Body=k.encode())
        allkeys = [o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='dl/')['Contents']]
        assert allkeys == sorted(allkeys, key=lambda k: k.encode()), allkeys
        assert allkeys == ['dl/x', 'dl/x!z', 'dl/x-1', 'dl/x-2/y', 'dl/x.txt', 'dl/x/sub', 'dl/x/sub-2', 'dl/y'], allkeys
        r = s3.list_objects_v2(Bucket=B, Prefix='dl/', Delimiter='-')
        assert [o['Key'] for o in r['Contents']] == ['dl/x', 'dl/x!z', 'dl/x.txt', 'dl/x/sub', 'dl/y'], r
        assert [p['Prefix'] for p in r['CommonPrefixes']] == ['dl/x-', 'dl/x/sub-'], r
        r = s3.list_objects_v2(Bucket=B, Prefix='dl/x', Delimiter='/')
        assert [o['Key'] for o in r['Contents']] == ['dl/x', 'dl/x!z', 'dl/x-1', 'dl/x.txt'], r
        assert [p['Prefix'] for p in r['CommonPrefixes']] == ['dl/x-2/', 'dl/x/'], r
        # Prefix ending in the delimiter.
        r = s3.list_objects_v2(Bucket=B, Prefix='dl/x/', Delimiter='/')
        assert [o['Key'] for o in r['Contents']] == ['dl/x/sub', 'dl/x/sub-2'] and 'CommonPrefixes' not in r, r
        # Paging one entry at a time gives the same sequence (V2 tokens and V1 markers).
        def pages_v2(**kw):
            out, token = [], None
            while True:
                args = dict(Bucket=B, MaxKeys=1, **kw)
                if token: args['ContinuationToken'] = token
                r = s3.list_objects_v2(**args)
                out += [o['Key'] for o in r.get('Contents', [])] + [p['Prefix'] for p in r.get('CommonPrefixes', [])]
                if not r['IsTruncated']: return out
                token = r['NextContinuationToken']
        assert pages_v2(Prefix='dl/', Delimiter='-') == ['dl/x', 'dl/x!z', 'dl/x-', 'dl/x.txt', 'dl/x/sub', 'dl/x/sub-', 'dl/y']
        assert pages_v2(Prefix='dl/') == allkeys
        out, marker = [], ''
        while True:
            r = s3.list_objects(Bucket=B, Prefix='dl/', Delimiter='/', MaxKeys=1, Marker=marker)
            out += [o['Key'] for o in r.get('Contents', [])] + [p['Prefix'] for p in r.get('CommonPrefixes', [])]
            if not r['IsTruncated']: break
            marker = r['NextMarker']
        assert out == ['dl/x', 'dl/x!z', 'dl/x-1', 'dl/x-2/', 'dl/x.txt', 'dl/x/', 'dl/y'], out
        # encoding-type=url (boto3 asks for it and decodes): keys and prefixes with a newline, '+', spaces, UTF-8.
        for k in ['enc/line\\nbreak/a', 'enc/sp ace+plus%', 'enc/\\u00fc/x']:
            s3.put_object(Bucket=B, Key=k, Body=b'e')
        r = s3.list_objects_v2(Bucket=B, Prefix='enc/', Delimiter='/')
        assert r['EncodingType'] == 'url', r
        assert [o['Key'] for o in r['Contents']] == ['enc/sp ace+plus%'], r
        assert [p['Prefix'] for p in r['CommonPrefixes']] == ['enc/line\\nbreak/', 'enc/\\u00fc/'], r
        r = s3.list_objects_v2(Bucket=B, Prefix='enc/line\\n', StartAfter='enc/line\\n')
        assert [o['Key'] for o in r['Contents']] == ['enc/line\\nbreak/a'] and r['Prefix'] == 'enc/line\\n' and r['StartAfter'] == 'enc/line\\n', r
        r = s3.list_objects(Bucket=B, Prefix='enc/', Delimiter='/', Marker='enc/line\\n')
        assert r['Marker'] == 'enc/line\\n' and [p['Prefix'] for p in r['CommonPrefixes']] == ['enc/line\\nbreak/', 'enc/\\u00fc/'], r
        """, endpoint: fx.endpoint)
        // Raw: every encoded element is encoded, and the answer says so.
        let q = "delimiter=%2F&encoding-type=url&list-type=2&prefix=enc%2F&start-after=enc%2Fa%0Ab"
        let r = try await signedRequest(port: fx.port, method: "GET", path: "/repo", query: q)
        XCTAssertEqual(r.status, 200, r.text)
        XCTAssertTrue(r.text.contains("<EncodingType>url</EncodingType>"), r.text)
        XCTAssertTrue(r.text.contains("<StartAfter>enc/a%0Ab</StartAfter>"), r.text)
        XCTAssertTrue(r.text.contains("<Prefix>enc/line%0Abreak/</Prefix>"), r.text)
        XCTAssertTrue(r.text.contains("<Key>enc/sp%20ace%2Bplus%25</Key>"), r.text)
        XCTAssertFalse(r.text.contains("line\nbreak"), "no raw newline in the names")
        let plain = try await signedRequest(port: fx.port, method: "GET", path: "/repo", query: "list-type=2&prefix=enc%2F")
        XCTAssertFalse(plain.text.contains("EncodingType"), plain.text)
    }

    /// A crash in the middle of a move leaves `.automate-moving-<name>` beside the key: GET, HEAD and PUT of
    /// that key complete the move first, without a listing of the folder.
    func testInterruptedMovesAreCompletedOnAccess() async throws {
        let fx = try await FSFixture.start()
        defer { Task { await fx.stop() } }
        let fm = FileManager.default
        func put(_ key: String, _ body: String) async throws {
            let r = try await signedRequest(port: fx.port, method: "PUT", path: "/repo/" + key, body: Array(body.utf8))
            XCTAssertEqual(r.status, 200, r.text)
        }
        func assertServes(_ key: String, _ body: String, line: UInt = #line) async throws {
            let h = try await signedRequest(port: fx.port, method: "HEAD", path: "/repo/" + key)
            XCTAssertEqual(h.status, 200, "HEAD \(key)", line: line)
            let g = try await signedRequest(port: fx.port, method: "GET", path: "/repo/" + key)
            XCTAssertEqual(g.status, 200, "GET \(key): \(g.text)", line: line)
            XCTAssertEqual(g.text, body, line: line)
        }
        let d = fx.bucketDir
        // Into a folder: `a` was renamed aside and its folder made, the rename into it did not happen.
        try await put("in/a", "into")
        XCTAssertEqual(rename(d + "/in/a", d + "/in/.automate-moving-a"), 0)
        XCTAssertEqual(mkdir(d + "/in/a", 0o755), 0)
        try await assertServes("in/a", "into")
        XCTAssertTrue(fm.fileExists(atPath: d + "/in/a/.automate-object"))
        XCTAssertFalse(fm.fileExists(atPath: d + "/in/.automate-moving-a"))
        // Out of a folder, before the folder was removed: the object is beside its (now empty) folder.
        try await put("out/a", "out")
        try await put("out/a/b", "b")
        XCTAssertEqual(unlink(d + "/out/a/b"), 0)
        XCTAssertEqual(rename(d + "/out/a/.automate-object", d + "/out/.automate-moving-a"), 0)
        try await assertServes("out/a", "out")
        XCTAssertFalse(fm.fileExists(atPath: d + "/out/.automate-moving-a"))
        // Out of a folder, after the folder was removed.
        try await put("gone/a", "gone")
        try await put("gone/a/b", "b")
        XCTAssertEqual(unlink(d + "/gone/a/b"), 0)
        XCTAssertEqual(rename(d + "/gone/a/.automate-object", d + "/gone/.automate-moving-a"), 0)
        XCTAssertEqual(rmdir(d + "/gone/a"), 0)
        try await assertServes("gone/a", "gone")
        XCTAssertTrue(fm.fileExists(atPath: d + "/gone/a"))
        // A PUT of the key in that state replaces the object and leaves no hidden file behind.
        try await put("re/a", "old")
        XCTAssertEqual(rename(d + "/re/a", d + "/re/.automate-moving-a"), 0)
        XCTAssertEqual(mkdir(d + "/re/a", 0o755), 0)
        try await put("re/a", "new")
        try await assertServes("re/a", "new")
        XCTAssertEqual(walk(d + "/re"), ["a/.automate-object"])
        fx.assertNoLeftovers()
    }
}
