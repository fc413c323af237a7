#!/usr/bin/env python3
"""Makes one unary RPC call to a stack service's Unix socket and prints its status.

    rpc-call.py SOCKET METHOD [PAYLOAD_HEX]

The wire format (length-prefixed protobuf envelopes, Sources/AutomateRPC/Proto/rpc_envelope.proto) in
plain Python with no protobuf library: an example for writing a client in any language, and the tool
the tests use to call a service as another user (runuser/setpriv). Prints `STATUS_NAME message` and
the response payload in hex when there is one; exits 0 for OK, 1 for any other status, 2 when the
socket cannot be reached.
"""
import socket
import struct
import sys

STATUS = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
          "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
          "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, at):
    shift = value = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def field(number, wire_type, body):
    key = varint(number << 3 | wire_type)
    return key + (varint(body) if wire_type == 0 else varint(len(body)) + body)


def parse(data):
    """Envelope fields by number: varints as ints, length-delimited as bytes."""
    fields, at = {}, 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields[number], at = read_varint(data, at)
        elif wire_type == 2:
            size, at = read_varint(data, at)
            fields[number], at = data[at:at + size], at + size
        else:
            raise ValueError(f"unexpected wire type {wire_type} in field {number}")
    return fields


def read_exactly(conn, count):
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    path, method = sys.argv[1], sys.argv[2]
    payload = bytes.fromhex(sys.argv[3]) if len(sys.argv) == 4 else b""
    request = field(1, 0, 1) + field(2, 2, method.encode()) + field(3, 2, payload)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError as error:
        print(f"cannot connect to {path}: {error.strerror}", file=sys.stderr)
        return 2
    with conn:
        conn.sendall(struct.pack(">I", len(request)) + request)
        while True:
            (size,) = struct.unpack(">I", read_exactly(conn, 4))
            reply = parse(read_exactly(conn, size))
            if reply.get(6):  # end_of_stream: the final status
                code = reply.get(4, 0)
                name = STATUS[code] if 0 <= code < len(STATUS) else str(code)
                print(f"{name} {reply.get(5, b'').decode()}".rstrip())
                if reply.get(3):
                    print(reply[3].hex())
                return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
