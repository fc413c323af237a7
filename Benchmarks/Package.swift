// swift-tools-version:6.0
// rpc-bench: AutomateRPC against grpc-swift-2 (HTTP/2 over a Unix socket) and a bare swift-nio
// length-prefixed echo. A separate package so that CI and set-up never compile it. See README.md.
import Foundation
import PackageDescription

/// The main package, by path. SwiftPM names a path dependency after its folder, so the product's
/// `package:` must be the clone's folder name, whatever the user called it (`main`, `automate`, ...).
let mainPackagePath = ".."
let mainPackage = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "automate-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: mainPackagePath),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    ],
    targets: [
        .executableTarget(
            name: "rpc-bench",
            dependencies: [
                .product(name: "AutomateRPC", package: mainPackage),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
