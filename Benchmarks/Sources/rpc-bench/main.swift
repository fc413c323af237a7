import AutomateRPC
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import SwiftProtobuf

// rpc-bench [seconds-per-case] [warmup-seconds]
let arguments = CommandLine.arguments.dropFirst()
let seconds = arguments.first.flatMap(Double.init) ?? 3
let warmup = arguments.dropFirst().first.flatMap(Double.init) ?? 1
let inFlightLevels = [1, 64]

let payload = [UInt8](repeating: 0xAB, count: 16)
var message = Google_Protobuf_BytesValue()
message.value = Data(payload)
let request = message

let directory = "/tmp/rpc-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: directory) }

var logger = Logger(label: "rpc-bench")
logger.logLevel = .warning
var results: [Measurement] = []

func report(_ m: Measurement) {
    print(String(format: "  %@ in-flight %3d: p50 %8.1f µs  p99 %8.1f µs  %10.0f calls/s", m.name.padding(toLength: 14, withPad: " ", startingAt: 0) as NSString, m.inFlight, m.p50Micros, m.p99Micros, m.callsPerSecond))
    results.append(m)
}

print("rpc-bench: 16-byte unary echo over a Unix socket, \(seconds) s per case after \(warmup) s warm-up, \(ProcessInfo.processInfo.activeProcessorCount) cores")

// (c) bare swift-nio echo: the floor.
do {
    let server = try await BareEcho.startServer(path: "\(directory)/bare.sock")
    let client = try await BareEcho.Client(path: "\(directory)/bare.sock")
    for inFlight in inFlightLevels {
        report(try await Measurement.run(name: "bare-nio", inFlight: inFlight, seconds: seconds, warmup: warmup) {
            let reply = try await client.echo(payload)
            precondition(reply.readableBytes == 20)
        })
    }
    try await client.channel.close()
    try await server.close()
}

// (a) AutomateRPC, default (handlers in Swift's concurrency pool), then with handlers on the event loop.
for onEventLoop in [false, true] {
    let name = onEventLoop ? "AutomateRPC-el" : "AutomateRPC"
    var configuration = RPCServer.Configuration(socketPath: "\(directory)/\(name).sock")
    configuration.runHandlersOnEventLoop = onEventLoop
    let server = RPCServer(configuration: configuration, logger: logger)
    server.registerUnary("bench.Echo/Echo") { (request: Google_Protobuf_BytesValue, _: RPCCallContext) in request }
    try await server.start()
    let client = try await RPCClient.connect(socketPath: configuration.socketPath)
    for inFlight in inFlightLevels {
        report(try await Measurement.run(name: name, inFlight: inFlight, seconds: seconds, warmup: warmup) {
            let reply = try await client.unary("bench.Echo/Echo", request, as: Google_Protobuf_BytesValue.self)
            precondition(reply.value.count == 16)
        })
    }
    await client.close()
    await server.shutdown()
}

// (b) grpc-swift-2, HTTP/2 over a Unix socket.
do {
    let path = "\(directory)/grpc.sock"
    let server = GRPCServer(
        transport: .http2NIOPosix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext),
        services: [GRPCEcho.Service()])
    let client = GRPCClient(
        transport: try .http2NIOPosix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext))
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.serve() }
        _ = try await server.listeningAddress
        group.addTask { try await client.runConnections() }
        for inFlight in inFlightLevels {
            report(try await Measurement.run(name: "grpc-swift-2", inFlight: inFlight, seconds: seconds, warmup: warmup) {
                let reply = try await GRPCEcho.call(client, request)
                precondition(reply.value.count == 16)
            })
        }
        client.beginGracefulShutdown()
        server.beginGracefulShutdown()
        try await group.waitForAll()
    }
}

print("")
print("| system         | in flight | p50 µs | p99 µs | calls/s |")
print("|----------------|----------:|-------:|-------:|--------:|")
for m in results {
    print(String(format: "| %@ | %9d | %6.1f | %6.1f | %7.0f |", m.name.padding(toLength: 14, withPad: " ", startingAt: 0) as NSString, m.inFlight, m.p50Micros, m.p99Micros, m.callsPerSecond))
}
func find(_ name: String, _ inFlight: Int) -> Measurement { results.first { $0.name == name && $0.inFlight == inFlight }! }
let automate1 = find("AutomateRPC", 1), bare1 = find("bare-nio", 1), grpc1 = find("grpc-swift-2", 1)
let automateEL1 = find("AutomateRPC-el", 1), automateEL64 = find("AutomateRPC-el", 64)
let automate64 = find("AutomateRPC", 64), bare64 = find("bare-nio", 64), grpc64 = find("grpc-swift-2", 64)
print("")
print(String(format: "AutomateRPC p50 / bare p50 = %.2f (target ≤ 1.3)", automate1.p50Micros / bare1.p50Micros))
print(String(format: "AutomateRPC p50 / bare p50 at 64 in flight = %.2f", automate64.p50Micros / bare64.p50Micros))
print(String(format: "AutomateRPC calls/s at 64 = %.0f (target ≥ 150000)", automate64.callsPerSecond))
print(String(format: "AutomateRPC-el (runHandlersOnEventLoop) p50 / bare p50 = %.2f, calls/s at 64 = %.0f", automateEL1.p50Micros / bare1.p50Micros, automateEL64.callsPerSecond))
print(String(format: "AutomateRPC vs grpc-swift-2: p50 %.2fx lower, calls/s at 64 %.2fx higher", grpc1.p50Micros / automate1.p50Micros, automate64.callsPerSecond / grpc64.callsPerSecond))
print(String(format: "bare calls/s at 64 = %.0f", bare64.callsPerSecond))
