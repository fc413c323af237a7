@testable import AutomateManifest
import Testing

@Suite struct KeyLocatorTests {
    @Test func findsHeadersKeysDottedKeysAndElements() {
        let text = """
            # comment with [brackets] and key = "value"
            top = 1
            [service]  # trailing comment
            name = "a # not a comment"
            command = [
              "/bin/x",   # first
              '''multi
            line''',
              "c",
            ]
            "quoted.key" = true
            a.b.c = 3
            [ "x" . y ]
            inline = { k = 1, n = { m = [1, 2] } }
            nested = [[1, 2], [
              3,
            ]]
            s = \"\"\"
            z = 1
            \"\"\"
            after = 2
            [[items]]
            v = 1
            [[items]]
            v = 2
            """
        let l = TOMLKeyLocator(text: text)
        #expect(l.exactLine(of: ["top"]) == 2)
        #expect(l.exactLine(of: ["service"]) == 3)
        #expect(l.exactLine(of: ["service", "name"]) == 4)
        #expect(l.exactLine(of: ["service", "command"]) == 5)
        #expect(l.exactLine(of: ["service", "command", "[0]"]) == 6)
        #expect(l.exactLine(of: ["service", "command", "[1]"]) == 7)
        #expect(l.exactLine(of: ["service", "command", "[2]"]) == 9)
        #expect(l.exactLine(of: ["service", "quoted.key"]) == 11)
        #expect(l.exactLine(of: ["service", "a"]) == 12)
        #expect(l.exactLine(of: ["service", "a", "b", "c"]) == 12)
        #expect(l.exactLine(of: ["x", "y"]) == 13)
        #expect(l.exactLine(of: ["x", "y", "inline", "n", "m", "[1]"]) == 14)
        #expect(l.exactLine(of: ["x", "y", "nested", "[1]", "[0]"]) == 16)
        #expect(l.exactLine(of: ["x", "y", "z"]) == nil)
        #expect(l.exactLine(of: ["x", "y", "after"]) == 21)
        #expect(l.exactLine(of: ["items", "[1]", "v"]) == 25)
        // A missing key falls back to its table.
        #expect(l.line(of: ["service", "missing"]) == 3)
        #expect(l.line(of: ["nothing"]) == nil)
    }

    @Test func neverLoopsOnGarbage() {
        for text in ["[", "a = ", "= 1", "a = [1, ", "a = {", "\"unterminated", "[a.", "a = '''x", "x\n\n==\n"] {
            _ = TOMLKeyLocator(text: text)
        }
    }

    @Test func suggestions() {
        #expect(NameRules.suggestion(for: "comand", among: ["name", "command"]) == "command")
        #expect(NameRules.suggestion(for: "zzz", among: ["name", "command"]) == nil)
        #expect(NameRules.editDistance("ab", "ba") == 1)
    }
}
