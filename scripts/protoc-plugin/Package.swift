// swift-tools-version:6.0
// Builds swift-protobuf's protoc-gen-swift plugin, on demand, for scripts/generate-protos.sh.
// Kept out of the main package so that neither CI nor set-up ever compiles it.
import PackageDescription

let package = Package(
    name: "protoc-plugin",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    ],
    targets: []
)
