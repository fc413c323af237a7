#ifndef AUTOMATE_GATEWAY_SHIMS_H
#define AUTOMATE_GATEWAY_SHIMS_H
/* Helpers the backup-gateway needs that Glibc's Swift module does not expose (static inline). */

/* S3 checksums (x-amz-checksum-crc32 / crc32c) for the backup-gateway: slicing-by-8 tables built on
 * first use (a benign race: every thread writes the same values), CRC32C in hardware when SSE4.2 is there. */
#include <stdint.h>
#include <stddef.h>
static inline void automate_crc_tables(uint32_t table[8][256], uint32_t poly) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
}
static inline uint32_t automate_crc_sliced(uint32_t table[8][256], uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint32_t a = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = table[7][a & 0xFF] ^ table[6][(a >> 8) & 0xFF] ^ table[5][(a >> 16) & 0xFF] ^ table[4][a >> 24]
            ^ table[3][b & 0xFF] ^ table[2][(b >> 8) & 0xFF] ^ table[1][(b >> 16) & 0xFF] ^ table[0][b >> 24];
        p += 8; n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}
/* CRC-32 by carry-less multiplication (crc32.c): `state` is the running register (the CRC inverted), `n` at
 * least 64 and a multiple of 16; only where automate_crc32_fold_available() says the CPU has PCLMULQDQ. */
uint32_t automate_crc32_fold(uint32_t state, const uint8_t *p, size_t n);
int automate_crc32_fold_available(void);
/* MD5 (md5.c). `state` starts as 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476; blocks are 64 bytes.
 * automate_md5_x8: eight streams, state[word * 8 + lane], `blocks` blocks from each of the eight pointers
 * (fast only where automate_md5_x8_available() says the CPU has AVX2). automate_md5_final pads the
 * `tail_length` (< 64) bytes after the last whole block of a `total`-byte message and writes the digest. */
void automate_md5_blocks(uint32_t state[4], const uint8_t *p, size_t blocks);
void automate_md5_x8(uint32_t state[32], const uint8_t *const data[8], size_t blocks);
int automate_md5_x8_available(void);
void automate_md5_final(uint32_t state[4], const uint8_t *tail, size_t tail_length, uint64_t total, uint8_t digest[16]);
/* Slicing-by-8 only (what automate_crc32 falls back to; tests compare the two). */
static inline uint32_t automate_crc32_sliced(uint32_t crc, const void *data, size_t n) {
    static uint32_t table[8][256];
    static volatile int ready = 0;
    if (!ready) { automate_crc_tables(table, 0xEDB88320u); __sync_synchronize(); ready = 1; }
    return automate_crc_sliced(table, crc, (const uint8_t *)data, n);
}
static inline uint32_t automate_crc32(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    if (n >= 64 && automate_crc32_fold_available()) {
        size_t bulk = n & ~(size_t)15;
        crc = ~automate_crc32_fold(~crc, p, bulk);
        p += bulk;
        n -= bulk;
    }
    return automate_crc32_sliced(crc, p, n);
}
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static inline uint32_t automate_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) { uint64_t v; __builtin_memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; n -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif
static inline uint32_t automate_crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return automate_crc32c_hw(crc, (const uint8_t *)data, n);
#endif
    static uint32_t table[8][256];
    static volatile int ready = 0;
    if (!ready) { automate_crc_tables(table, 0x82F63B78u); __sync_synchronize(); ready = 1; }
    return automate_crc_sliced(table, crc, (const uint8_t *)data, n);
}

/* File helpers for the backup-gateway that Glibc's Swift module does not expose. */
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>
/* Copies `len` bytes from in_fd's position to out_fd's (both advance): copy_file_range, in the kernel,
 * falling back to read/write where the file systems refuse it. Returns 0, or -1 with errno (ENODATA: the
 * source ended first). The backup-gateway's copies and automate-wal's WAL hand-off use it. */
static inline int automate_copy_fd(int in_fd, int out_fd, size_t len) {
    int fallback = 0;
    char buf[1 << 16];
    while (len > 0) {
        long n;
        if (!fallback) {
            n = syscall(SYS_copy_file_range, in_fd, (void *)0, out_fd, (void *)0, len, 0u);
            if (n < 0 && errno != EINTR) { fallback = 1; continue; }
        } else {
            n = read(in_fd, buf, len < sizeof buf ? len : sizeof buf);
            for (long off = 0; n > 0 && off < n;) {
                long w = write(out_fd, buf + off, (size_t)(n - off));
                if (w < 0) { if (errno == EINTR) continue; return -1; }
                off += w;
            }
        }
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        if (n == 0) { errno = ENODATA; return -1; }
        len -= (size_t)n;
    }
    return 0;
}
static inline int automate_sync_file_range_write(int fd, long long offset, long long nbytes) {
    return (int)syscall(SYS_sync_file_range, fd, offset, nbytes, 2u /* SYNC_FILE_RANGE_WRITE */);
}

/* Bounded heap growth for the gateway: few malloc arenas, fixed mmap threshold (big buffers go back to the OS). */
#include <malloc.h>
static inline void automate_malloc_tune(void) {
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
}
/* Raises the calling thread's nice value by `increment` (Linux keeps one per thread): work that should
 * yield the CPU to others under contention. Returns 0, or -1 with errno. */
#include <sys/resource.h>
#include <errno.h>
static inline int automate_thread_renice(int increment) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, (id_t)tid);
    if (current == -1 && errno != 0) return -1;
    return setpriority(PRIO_PROCESS, (id_t)tid, current + increment);
}

#endif
