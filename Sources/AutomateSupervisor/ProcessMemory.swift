import Foundation

/// The resident memory of this process.
public enum ProcessMemory {
    /// VmRSS from /proc/self/status, in bytes (0 if unreadable).
    public static func residentBytes(pid: String = "self") -> UInt64 {
        field("VmRSS", pid: pid)
    }

    /// VmHWM (peak resident set) from /proc/<pid>/status, in bytes.
    public static func peakResidentBytes(pid: String = "self") -> UInt64 {
        field("VmHWM", pid: pid)
    }

    private static func field(_ name: String, pid: String) -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let digits = line.split(separator: " ").compactMap { UInt64($0) }.first ?? 0
            return digits * 1024
        }
        return 0
    }
}
