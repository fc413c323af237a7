#!/usr/bin/env python3
"""Writes typed RPC method descriptors for every `service` block of the stack's .proto files.

For each Sources/**/Proto/<name>.proto with at least one `service`, writes <name>.rpc.swift beside it:
per service, a namespace enum holding one `RPCUnaryMethod<Request, Response>` or
`RPCServerStreamMethod<Request, Response>` per rpc, with the method's name on the wire, e.g.

    public enum PGSidecarService {
        public static let createBackup = RPCUnaryMethod<Automate_Sidecar_Pg_PGCreateBackupRequest,
            Automate_Sidecar_Pg_PGOperation>("CreateBackup")
        ...
    }

Names:
  - The enum is the service's name with "Service" appended unless it already ends with it
    (PGSidecar -> PGSidecarService, DeploymentService -> DeploymentService).
  - A descriptor is the rpc's name with its first letter lowered (CreateBackup -> createBackup;
    a leading acronym whole: WALArchiveStatus -> walArchiveStatus).
  - Message types follow protoc-gen-swift: the package's components in UpperCamelCase joined by "_",
    then "_" and the message name (automate.sidecar.pg + PGOperation -> Automate_Sidecar_Pg_PGOperation);
    a nested message is reached with "." (Automate_Foo_V1_Outer.Inner).
  - The method name on the wire is "<package>.<Service>/<Rpc>", or the bare "<Rpc>" when the comment line
    `// automate-rpc: unqualified-method-names` is among the comments right before the service.

Needs only python3's standard library (no protoc plugin), so it runs alone; generate-protos.sh runs it
after protoc.

Usage: generate-rpc.py [--output-root DIR] [PROTO ...]
  With no PROTO, every Sources/**/Proto/*.proto of the repository. With --output-root, files are written
  under DIR at the same paths relative to the repository (a .proto outside it: at DIR's top) instead of
  beside the .proto files (the tests use this to check that the committed files are up to date).
"""

import argparse
import os
import re
import sys

UNQUALIFIED_DIRECTIVE = "automate-rpc: unqualified-method-names"


class ProtoError(Exception):
    """A .proto the generator cannot read; the message names the file and line."""


class Token:
    def __init__(self, text, line, comments):
        self.text = text
        self.line = line
        # The `//` comment lines right before this token (no code between them and it).
        self.comments = comments


def tokenize(path, source):
    """Splits proto source into tokens, keeping the line comments that precede each token."""
    tokens = []
    pending = []
    i = 0
    line = 1
    n = len(source)
    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            end = n if end < 0 else end
            pending.append(source[i + 2:end].strip())
            i = end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise ProtoError(f"{path}:{line}: unterminated /* comment")
            line += source.count("\n", i, end)
            i = end + 2
        elif c in "\"'":
            j = i + 1
            while j < n and source[j] != c:
                j += 2 if source[j] == "\\" else 1
            if j >= n:
                raise ProtoError(f"{path}:{line}: unterminated string")
            tokens.append(Token(source[i:j + 1], line, pending))
            pending = []
            i = j + 1
        elif c.isalnum() or c in "_.":
            j = i
            while j < n and (source[j].isalnum() or source[j] in "_."):
                j += 1
            tokens.append(Token(source[i:j], line, pending))
            pending = []
            i = j
        else:
            tokens.append(Token(c, line, pending))
            pending = []
            i += 1
    return tokens


class ProtoFile:
    def __init__(self, path):
        self.path = path
        self.package = ""
        self.imports = []
        # Fully qualified names (without the leading dot) of every message, nested ones included.
        self.messages = set()
        # [(service name, directive comments, [(rpc, request, server_streaming, response, line)])]
        self.services = []


def parse(path):
    with open(path, encoding="utf-8") as f:
        tokens = tokenize(path, f.read())
    proto = ProtoFile(path)
    pos = 0

    def expect(text):
        nonlocal pos
        if pos >= len(tokens) or tokens[pos].text != text:
            where = tokens[pos].line if pos < len(tokens) else "end"
            found = tokens[pos].text if pos < len(tokens) else "end of file"
            raise ProtoError(f"{path}:{where}: expected '{text}', found '{found}'")
        pos += 1

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise ProtoError(f"{path}: unexpected end of file")
        pos += 1
        return tokens[pos - 1]

    def skip_statement_or_block():
        """Skips to the end of a `...;` statement or a balanced `{ ... }` block."""
        nonlocal pos
        depth = 0
        while pos < len(tokens):
            text = take().text
            if text == "{":
                depth += 1
            elif text == "}":
                depth -= 1
                if depth == 0:
                    return
            elif text == ";" and depth == 0:
                return
        raise ProtoError(f"{path}: unbalanced braces")

    def parse_message(scope):
        """At the message's name; records it and its nested messages."""
        nonlocal pos
        name = take().text
        qualified = f"{scope}.{name}" if scope else name
        proto.messages.add(qualified)
        expect("{")
        while True:
            if pos >= len(tokens):
                raise ProtoError(f"{path}: message {name} is not closed")
            text = tokens[pos].text
            if text == "}":
                pos += 1
                return
            if text == "message":
                pos += 1
                parse_message(qualified)
            else:
                skip_statement_or_block()

    def parse_service(keyword):
        nonlocal pos
        name = take().text
        unqualified = any(UNQUALIFIED_DIRECTIVE in comment for comment in keyword.comments)
        methods = []
        expect("{")
        while True:
            token = take()
            if token.text == "}":
                break
            if token.text == "option":
                pos -= 1
                skip_statement_or_block()
                continue
            if token.text == ";":
                continue
            if token.text != "rpc":
                raise ProtoError(f"{path}:{token.line}: expected 'rpc' in service {name}, found '{token.text}'")
            rpc = take().text
            expect("(")
            if tokens[pos].text == "stream":
                raise ProtoError(f"{path}:{token.line}: {name}.{rpc} streams its request; the automate wire "
                                 "carries only unary and server-streaming calls")
            request = take().text
            expect(")")
            expect("returns")
            expect("(")
            streaming = False
            if tokens[pos].text == "stream":
                streaming = True
                pos += 1
            response = take().text
            expect(")")
            if tokens[pos].text == "{":
                skip_statement_or_block()
            else:
                expect(";")
            methods.append((rpc, request, streaming, response, token.line))
        proto.services.append((name, unqualified, methods))

    while pos < len(tokens):
        token = take()
        if token.text == "package":
            proto.package = take().text
            expect(";")
        elif token.text == "import":
            if tokens[pos].text in ("public", "weak"):
                pos += 1
            proto.imports.append(take().text.strip("\"'"))
            expect(";")
        elif token.text == "message":
            parse_message(proto.package)
        elif token.text == "service":
            parse_service(token)
        elif token.text in ("syntax", "option", "edition"):
            pos -= 1
            skip_statement_or_block()
        elif token.text == "enum" or token.text == "extend":
            skip_statement_or_block()
        else:
            raise ProtoError(f"{path}:{token.line}: unexpected '{token.text}'")
    return proto


def upper_camel(component):
    """protoc-gen-swift's case rule for a package component: foo_bar -> FooBar, v1 -> V1."""
    return "".join(part[:1].upper() + part[1:] for part in component.split("_") if part)


def swift_type(qualified, package_of):
    """The Swift name protoc-gen-swift gives the message `qualified` (a fully qualified proto name)."""
    package = package_of(qualified)
    rest = qualified[len(package) + 1:] if package else qualified
    prefix = "_".join(upper_camel(c) for c in package.split(".")) + "_" if package else ""
    outer, *nested = rest.split(".")
    return ".".join([prefix + outer] + nested)


def resolve(name, proto, known, path, line):
    """Resolves a type reference as protoc does: innermost package scope first."""
    if name.startswith("."):
        candidates = [name[1:]]
    else:
        scope = proto.package.split(".") if proto.package else []
        candidates = [".".join(scope[:i] + [name]) for i in range(len(scope), -1, -1)]
    for candidate in candidates:
        if candidate in known:
            return candidate
    raise ProtoError(f"{path}:{line}: unknown message type '{name}' (not defined in this file or its imports)")


def lower_first(name):
    # A leading acronym is lowered whole, as Swift names it: WALArchiveStatus -> walArchiveStatus.
    run = len(name) - len(name.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    if run > 1:
        cut = run if run == len(name) else run - 1
        return name[:cut].lower() + name[cut:]
    return name[:1].lower() + name[1:]


def enum_name(service):
    return service if service.endswith("Service") else service + "Service"


def render(proto, load):
    """The Swift source for the services of one parsed .proto (None when it has none)."""
    if not proto.services:
        return None
    known = set(proto.messages)
    packages = {proto.package}
    for imported in proto.imports:
        # Imports are relative to the .proto's own folder (generate-protos.sh's --proto_path).
        other = load(os.path.join(os.path.dirname(proto.path), imported))
        known |= other.messages
        packages.add(other.package)

    def package_of(qualified):
        matches = [p for p in packages if p and qualified.startswith(p + ".")]
        return max(matches, key=len) if matches else ""

    name = os.path.basename(proto.path)
    lines = [
        f"// Generated by scripts/generate-rpc.py from {name}. Do not edit; run scripts/generate-protos.sh",
        "// (or scripts/generate-rpc.py alone) after changing the service blocks.",
        "",
        "import AutomateRPC",
        "",
    ]
    for index, (service, unqualified, methods) in enumerate(proto.services):
        full = f"{proto.package}.{service}" if proto.package else service
        lines.append(f"/// The methods of `{full}` ({name}), for `RPCClient.call`/`stream` and `RPCServer.register`.")
        if unqualified:
            lines.append("/// Their names on the wire are the bare rpc names.")
        lines.append(f"public enum {enum_name(service)} {{")
        for rpc, request, streaming, response, line in methods:
            req = swift_type(resolve(request, proto, known, proto.path, line), package_of)
            resp = swift_type(resolve(response, proto, known, proto.path, line), package_of)
            kind = "RPCServerStreamMethod" if streaming else "RPCUnaryMethod"
            wire = rpc if unqualified else f"{full}/{rpc}"
            shape = f"{request}) -> stream {response}" if streaming else f"{request}) -> {response}"
            lines.append(f"    /// `{rpc}({shape}`, called `{wire}` on the wire.")
            lines.append(f"    public static let {lower_first(rpc)} = {kind}<{req}, {resp}>(\"{wire}\")")
        members = ", ".join(lower_first(m[0]) for m in methods)
        lines.append("")
        lines.append("    /// Every method of the service, in declaration order.")
        lines.append(f"    public static let methods: [any RPCMethod] = [{members}]")
        lines.append("}")
        if index < len(proto.services) - 1:
            lines.append("")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-root", help="write under this folder instead of beside each .proto")
    parser.add_argument("protos", nargs="*", help="the .proto files (default: every Sources/**/Proto/*.proto)")
    args = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    protos = [os.path.relpath(os.path.abspath(p), root) for p in args.protos]
    if not protos:
        for directory, _, files in os.walk(os.path.join(root, "Sources")):
            if os.path.basename(directory) == "Proto":
                protos += [os.path.relpath(os.path.join(directory, f), root) for f in files if f.endswith(".proto")]
    protos.sort()

    try:
        cache = {}

        def load(path):
            path = os.path.normpath(path)
            if path not in cache:
                if not os.path.isfile(path):
                    raise ProtoError(f"{path}: imported but not found")
                cache[path] = parse(path)
            return cache[path]

        written = 0
        for relative in protos:
            proto = load(os.path.join(root, relative))
            source = render(proto, load)
            if source is None:
                continue
            target = os.path.splitext(relative)[0] + ".rpc.swift"
            if target.startswith(".." + os.sep):
                # A .proto outside the repository: beside it, or at the top of the output root.
                target = os.path.basename(target)
                base = args.output_root or os.path.dirname(os.path.join(root, relative))
            else:
                base = args.output_root or root
            target = os.path.join(base, target)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(source)
            written += 1
            print(f"generate-rpc: {relative} -> {target}", file=sys.stderr)
    except (ProtoError, OSError) as error:
        print(f"generate-rpc: {error}", file=sys.stderr)
        return 1
    print(f"generate-rpc: wrote {written} file(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
