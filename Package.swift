// swift-tools-version:6.0
//
// automate: a supervised multi-service stack with consistent backups and restore-by-relaunch.
// Libraries first (one job each), then one thin executable per process. See README.md.
import PackageDescription

/// Settings every Swift target shares. The package is in the Swift 6 language mode (complete
/// concurrency checking: a data race is a compile error); see `swiftLanguageModes` below.
let swiftSettings: [SwiftSetting] = []

let package = Package(
    name: "automate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "automate", targets: ["automate"]),
        .executable(name: "automate-supervisor", targets: ["automate-supervisor"]),
        .executable(name: "backup-gateway", targets: ["backup-gateway"]),
        .executable(name: "deployment-service", targets: ["deployment-service"]),
        .executable(name: "teams-service", targets: ["teams-service"]),
        .executable(name: "compliance-service", targets: ["compliance-service"]),
        .executable(name: "chunkstore-bench", targets: ["chunkstore-bench"]),
        .executable(name: "automate-wal", targets: ["automate-wal"]),
        .executable(name: "automate-external", targets: ["automate-external"]),
        .library(name: "AutomateRPC", targets: ["AutomateRPC"]),
        .library(name: "AutomateManifest", targets: ["AutomateManifest"]),
        .library(name: "AutomateSupervisor", targets: ["AutomateSupervisor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
    ],
    targets: [
        // MARK: system libraries and C shims

        /// fork/exec from one long-lived thread (PR_SET_PDEATHSIG is per forking thread), process
        /// groups, user switching, child-subreaper: what Foundation's Process cannot do.
        .target(name: "CAutomateShims"),
        /// libsystemd: sd_notify, watchdog, journald.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        /// libcurl, for outbound HTTP (S3 upstream, search engine).
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // MARK: libraries

        /// The one error shape of the project's modules (`CodedError<Code>`: a code, a message, where).
        .target(name: "AutomateErrors", swiftSettings: swiftSettings),

        /// Length-prefixed protobuf RPC over Unix-domain sockets (the wire every service speaks).
        .target(
            name: "AutomateRPC",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Proto/rpc_envelope.proto"],
            swiftSettings: swiftSettings
        ),
        /// Service manifests (`services/*.toml`): parsing, validation with file/line/field, dependency order.
        .target(
            name: "AutomateManifest",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: swiftSettings
        ),
        /// The supervisor core: child processes, hooks, health, restarts, logs, the control service.
        .target(
            name: "AutomateSupervisor",
            dependencies: [
                "AutomateErrors", "CAutomateShims", "CSystemd", "AutomateRPC", "AutomateManifest", "BackupContract",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Proto/supervisor_control.proto"],
            swiftSettings: swiftSettings
        ),
        /// The `automate` command line (argument parsing and rendering; the executable is thin).
        .target(
            name: "AutomateCLI",
            dependencies: [
                "AutomateSupervisor", "AutomateRPC", "AutomateManifest", "CAutomateShims", "BackupRepository",
                "BackupContract", "DomainAPI", "S3Client", "ChunkStore", "SidecarProto", "DataTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The backup contract every data-owning service implements (protobuf messages and method names).
        .target(
            name: "BackupContract",
            dependencies: ["AutomateRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto/backup_contract.proto", "Proto/deployment_service.proto"],
            swiftSettings: swiftSettings
        ),
        /// Backup repositories on disk: listing, states, checksums and verification (no service needed).
        .target(
            name: "BackupRepository",
            dependencies: ["S3Client", "ChunkStore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        /// The S3 API: filesystem store, SigV4 verification and signing, re-signing proxy.
        .target(
            name: "S3Gateway",
            dependencies: [
                "CAutomateShims", "S3Client",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: sidecars (pg-sidecar-service, es-sidecar-service) and the S3 client

        /// libpq (PostgreSQL's client library) and libzstd (streaming compression), for DataTools.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        /// Child tools in their own process groups, streaming zstd, and libpq: what the sidecars and the
        /// service kit share for moving data (no RPC, no S3).
        .target(name: "DataTools", dependencies: ["AutomateErrors", "CAutomateShims", "CLibPQ", "CZstd"], swiftSettings: swiftSettings),
        /// Long-running operations: a registry (start, watch every change in order, cancel, list), one
        /// progress type, and a bounded pool for blocking work whose cancellation kills what it started.
        .target(name: "Operations", dependencies: ["AutomateErrors", "CAutomateShims"], swiftSettings: swiftSettings),
        /// The chunked repository: FastCDC chunks stored once, zstd-compressed, AES-256-GCM sealed, in packs
        /// with an index, on a folder or an S3 bucket (docs/repository-format.md).
        .target(
            name: "ChunkStore",
            dependencies: [
                "AutomateErrors", "CZstd", "S3Client",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Where a backup's artifacts go and come from: the repository's format (`repository.json`), plain
        /// objects or the chunk store, its passphrase, write sessions and readers.
        .target(
            name: "ArtifactStorage",
            dependencies: ["AutomateErrors", "ChunkStore", "DataTools", "S3Client", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        /// S3 client over libcurl (SigV4 signed by libcurl), streaming get/put and bounded multipart upload.
        .target(name: "S3Client", dependencies: ["CCurl", "Operations"], swiftSettings: swiftSettings),
        /// What the supervisor hands a service (its variables, its `[config]` values, the gateway), read
        /// with one set of typed checks.
        .target(name: "ServiceSettings", dependencies: ["AutomateErrors", "S3Client"], swiftSettings: swiftSettings),
        /// The sidecars' RPC contract (pg_sidecar.proto, es_sidecar.proto), generated code, and how operations answer on it.
        .target(
            name: "SidecarProto",
            dependencies: ["PGSidecarProto", "AutomateRPC", "Operations", "ChunkStore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto/es_sidecar.proto"],
            swiftSettings: swiftSettings
        ),
        /// The pg-sidecar's contract alone (pg_sidecar.proto, generated): what `automate-wal` needs of it.
        .target(
            name: "PGSidecarProto",
            dependencies: ["AutomateRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto/pg_sidecar.proto"],
            swiftSettings: swiftSettings
        ),
        /// pg_dump/pg_restore through zstd to S3, with libpq for catalog queries.
        .target(
            name: "PGSidecar",
            dependencies: [
                "AutomateErrors", "ArtifactStorage", "BackupRepository", "DataTools", "Operations", "S3Client", "ServiceSettings", "SidecarProto", "AutomateRPC",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Search-engine export/import (NDJSON through S3) and `_snapshot` mode.
        .target(
            name: "ESSidecar",
            dependencies: [
                "ArtifactStorage", "Operations", "S3Client", "ServiceSettings", "SidecarProto", "AutomateRPC",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Drives the chunk store from a pipe for scripts/bench-chunks.sh.
        .executableTarget(name: "chunkstore-bench", dependencies: ["ChunkStore"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "pg-sidecar-service",
            dependencies: ["PGSidecar", "Operations", "SidecarProto", "S3Client", "AutomateRPC", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        /// The database server's archive_command and restore_command: WAL files to and from the pg-sidecar.
        .executableTarget(
            name: "automate-wal",
            dependencies: ["PGSidecarProto", "AutomateRPC", "CAutomateShims"],
            swiftSettings: swiftSettings,
            // PostgreSQL starts it once per WAL segment: with the Swift runtime and Foundation linked in, a
            // start spends no time loading and binding some 50 shared libraries (scripts/bench-pitr.sh).
            // lld, the toolchain's linker, because it resolves the static libraries in any order.
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-use-ld=lld"] + [
                "Foundation", "CoreFoundation", "FoundationEssentials", "FoundationInternationalization",
                "_FoundationICU", "_FoundationCollections", "_FoundationCShims", "swiftSynchronization",
                "swift_StringProcessing", "swift_RegexParser", "swiftDispatch", "dispatch", "BlocksRuntime", "stdc++",
            ].flatMap { ["-Xlinker", "-l\($0)"] }, .when(configuration: .release))]
        ),
        /// Checks of external PostgreSQL and search clusters (`config/external.toml`), as services see them.
        .target(name: "ExternalServers", dependencies: ["DataTools", "ESSidecar", "S3Client"], swiftSettings: swiftSettings),
        /// The watcher that stands in for a service whose server is external, and its health check.
        .executableTarget(name: "automate-external", dependencies: ["ExternalServers", "ESSidecar"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "es-sidecar-service",
            dependencies: ["ESSidecar", "Operations", "S3Client", "AutomateRPC", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        /// Test-only: real-process fixtures (temp folders, ports, tools, moto_server) the sidecar tests share.
        .target(name: "SidecarTestSupport", path: "Tests/SidecarTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "S3ClientTests", dependencies: ["S3Client", "Operations", "SidecarTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "OperationsTests", dependencies: ["Operations", "DataTools"], swiftSettings: swiftSettings),
        .testTarget(
            name: "PGSidecarTests",
            dependencies: ["PGSidecar", "DataTools", "ServiceKit", "ServiceSettings", "BackupContract", "SidecarProto", "AutomateRPC", "Operations", "S3Client", "SidecarTestSupport", "ESSidecar"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ESSidecarTests",
            dependencies: ["ESSidecar", "ExternalServers", "SidecarProto", "AutomateRPC", "Operations", "S3Client", "SidecarTestSupport"],
            swiftSettings: swiftSettings
        ),

        // MARK: backup orchestration: the service kit, the deployment-service, reference domain services

        /// What a Swift domain service uses to implement the backup contract by declaring what it owns.
        .target(
            name: "ServiceKit",
            dependencies: [
                "AutomateErrors", "ArtifactStorage", "AutomateRPC", "BackupContract", "BackupRepository", "DataTools", "Operations", "S3Client", "ServiceSettings", "SidecarProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The reference domain services' own APIs (teams.proto, compliance.proto) and generated code.
        .target(
            name: "DomainAPI",
            dependencies: ["AutomateRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto/teams.proto", "Proto/compliance.proto"],
            swiftSettings: swiftSettings
        ),
        /// The orchestrator: one backup of every service under one id, its store (SQLite), restores.
        .target(
            name: "DeploymentService",
            dependencies: [
                "ServiceKit", "AutomateRPC", "AutomateManifest", "BackupContract", "BackupRepository", "Operations", "S3Client",
                "ServiceSettings", "SidecarProto", "AutomateSupervisor", "ArtifactStorage", "ChunkStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "deployment-service", dependencies: ["DeploymentService", "ServiceKit"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "teams-service",
            dependencies: ["ServiceKit", "DomainAPI", "AutomateRPC", "DataTools"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "compliance-service",
            dependencies: [
                "ServiceKit", "DomainAPI", "AutomateRPC", "ESSidecar", "Operations", "S3Client", "BackupRepository",
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: executables (thin)

        .executableTarget(name: "automate", dependencies: ["AutomateCLI"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "automate-supervisor",
            dependencies: [
                "AutomateSupervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "backup-gateway",
            dependencies: [
                "S3Gateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: tests

        .testTarget(
            name: "AutomateRPCTests",
            // The proto modules: every generated service descriptor is round-tripped.
            dependencies: ["AutomateRPC", "SidecarProto", "BackupContract", "DomainAPI", "AutomateSupervisor"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "AutomateManifestTests", dependencies: ["AutomateManifest"], swiftSettings: swiftSettings),
        .testTarget(
            name: "BackupRepositoryTests",
            dependencies: ["BackupRepository", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AutomateSupervisorTests",
            dependencies: ["AutomateSupervisor", "AutomateRPC", "AutomateManifest", "CAutomateShims", "BackupRepository", "BackupContract", "DomainAPI",
                           "S3Client", "SidecarTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "S3GatewayTests", dependencies: ["S3Gateway", "S3Client", "SidecarTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ChunkStoreTests",
            dependencies: [
                "ChunkStore", "S3Client", "S3Gateway",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
