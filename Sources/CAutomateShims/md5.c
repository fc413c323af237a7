/* MD5 (RFC 1321) for the backup-gateway's uploads, whose ETags S3 clients compare: a portable one-stream
 * block function, and on x86-64 with AVX2 eight streams at once, one per 32-bit lane (the multi-buffer
 * technique of Intel's isa-l_crypto): the same instructions as one stream, so eight part uploads hash for
 * little more than the price of one. */
#include "automate_gateway.h"
#include <string.h>

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/* The 64 steps of one block, for whichever STEP, F, G, H and I are defined where it is used. */
#define MD5_STEPS \
    STEP(F, a, b, c, d, w[0], K[0], 7);   STEP(F, d, a, b, c, w[1], K[1], 12); \
    STEP(F, c, d, a, b, w[2], K[2], 17);  STEP(F, b, c, d, a, w[3], K[3], 22); \
    STEP(F, a, b, c, d, w[4], K[4], 7);   STEP(F, d, a, b, c, w[5], K[5], 12); \
    STEP(F, c, d, a, b, w[6], K[6], 17);  STEP(F, b, c, d, a, w[7], K[7], 22); \
    STEP(F, a, b, c, d, w[8], K[8], 7);   STEP(F, d, a, b, c, w[9], K[9], 12); \
    STEP(F, c, d, a, b, w[10], K[10], 17); STEP(F, b, c, d, a, w[11], K[11], 22); \
    STEP(F, a, b, c, d, w[12], K[12], 7);  STEP(F, d, a, b, c, w[13], K[13], 12); \
    STEP(F, c, d, a, b, w[14], K[14], 17); STEP(F, b, c, d, a, w[15], K[15], 22); \
    STEP(G, a, b, c, d, w[1], K[16], 5);   STEP(G, d, a, b, c, w[6], K[17], 9); \
    STEP(G, c, d, a, b, w[11], K[18], 14); STEP(G, b, c, d, a, w[0], K[19], 20); \
    STEP(G, a, b, c, d, w[5], K[20], 5);   STEP(G, d, a, b, c, w[10], K[21], 9); \
    STEP(G, c, d, a, b, w[15], K[22], 14); STEP(G, b, c, d, a, w[4], K[23], 20); \
    STEP(G, a, b, c, d, w[9], K[24], 5);   STEP(G, d, a, b, c, w[14], K[25], 9); \
    STEP(G, c, d, a, b, w[3], K[26], 14);  STEP(G, b, c, d, a, w[8], K[27], 20); \
    STEP(G, a, b, c, d, w[13], K[28], 5);  STEP(G, d, a, b, c, w[2], K[29], 9); \
    STEP(G, c, d, a, b, w[7], K[30], 14);  STEP(G, b, c, d, a, w[12], K[31], 20); \
    STEP(H, a, b, c, d, w[5], K[32], 4);   STEP(H, d, a, b, c, w[8], K[33], 11); \
    STEP(H, c, d, a, b, w[11], K[34], 16); STEP(H, b, c, d, a, w[14], K[35], 23); \
    STEP(H, a, b, c, d, w[1], K[36], 4);   STEP(H, d, a, b, c, w[4], K[37], 11); \
    STEP(H, c, d, a, b, w[7], K[38], 16);  STEP(H, b, c, d, a, w[10], K[39], 23); \
    STEP(H, a, b, c, d, w[13], K[40], 4);  STEP(H, d, a, b, c, w[0], K[41], 11); \
    STEP(H, c, d, a, b, w[3], K[42], 16);  STEP(H, b, c, d, a, w[6], K[43], 23); \
    STEP(H, a, b, c, d, w[9], K[44], 4);   STEP(H, d, a, b, c, w[12], K[45], 11); \
    STEP(H, c, d, a, b, w[15], K[46], 16); STEP(H, b, c, d, a, w[2], K[47], 23); \
    STEP(I, a, b, c, d, w[0], K[48], 6);   STEP(I, d, a, b, c, w[7], K[49], 10); \
    STEP(I, c, d, a, b, w[14], K[50], 15); STEP(I, b, c, d, a, w[5], K[51], 21); \
    STEP(I, a, b, c, d, w[12], K[52], 6);  STEP(I, d, a, b, c, w[3], K[53], 10); \
    STEP(I, c, d, a, b, w[10], K[54], 15); STEP(I, b, c, d, a, w[1], K[55], 21); \
    STEP(I, a, b, c, d, w[8], K[56], 6);   STEP(I, d, a, b, c, w[15], K[57], 10); \
    STEP(I, c, d, a, b, w[6], K[58], 15);  STEP(I, b, c, d, a, w[13], K[59], 21); \
    STEP(I, a, b, c, d, w[4], K[60], 6);   STEP(I, d, a, b, c, w[11], K[61], 10); \
    STEP(I, c, d, a, b, w[2], K[62], 15);  STEP(I, b, c, d, a, w[9], K[63], 21);

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define SROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
/* The message word and constant are added first, and G's half that does not need b (the newest value) next:
 * fewer dependent instructions per step, which is what bounds one MD5 stream. */
#define SSTEP(f, a, b, c, d, w, k, s) SSTEP_##f(a, b, c, d, w, k, s)
#define SSTEP_F(a, b, c, d, w, k, s) \
    do { a += (w) + (uint32_t)(k); a += (d) ^ ((b) & ((c) ^ (d))); a = b + SROTL(a, s); } while (0)
#define SSTEP_G(a, b, c, d, w, k, s) \
    do { a += (w) + (uint32_t)(k) + ((c) & ~(d)); a += (b) & (d); a = b + SROTL(a, s); } while (0)
#define SSTEP_H(a, b, c, d, w, k, s) \
    do { a += (w) + (uint32_t)(k); a += (b) ^ (c) ^ (d); a = b + SROTL(a, s); } while (0)
#define SSTEP_I(a, b, c, d, w, k, s) \
    do { a += (w) + (uint32_t)(k); a += (c) ^ ((b) | ~(d)); a = b + SROTL(a, s); } while (0)

void automate_md5_blocks(uint32_t state[4], const uint8_t *p, size_t blocks) {
    for (size_t n = 0; n < blocks; n++, p += 64) {
        uint32_t w[16];
        for (int i = 0; i < 16; i++) w[i] = le32(p + 4 * i);
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
#define STEP SSTEP
        MD5_STEPS
#undef STEP
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    }
}

void automate_md5_final(uint32_t state[4], const uint8_t *tail, size_t tail_length, uint64_t total, uint8_t digest[16]) {
    uint8_t last[128] = {0};
    memcpy(last, tail, tail_length);
    last[tail_length] = 0x80;
    size_t blocks = tail_length < 56 ? 1 : 2;
    uint64_t bits = total * 8;
    for (int i = 0; i < 8; i++) last[blocks * 64 - 8 + i] = (uint8_t)(bits >> (8 * i));
    automate_md5_blocks(state, last, blocks);
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++) digest[4 * j + i] = (uint8_t)(state[j] >> (8 * i));
}

#if defined(__x86_64__)
#include <immintrin.h>


#define ROTL(x, s) _mm256_or_si256(_mm256_slli_epi32((x), (s)), _mm256_srli_epi32((x), 32 - (s)))
#define STEP(f, a, b, c, d, w, k, s) \
    a = _mm256_add_epi32(b, ROTL(_mm256_add_epi32(_mm256_add_epi32(a, f(b, c, d)), _mm256_add_epi32(w, _mm256_set1_epi32(k))), s))
#define F(b, c, d) _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
#define G(b, c, d) _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
#define H(b, c, d) _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define I(b, c, d) _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones)))

/* rows r[0..7] (8 words each) -> columns */
__attribute__((target("avx2"))) static inline void transpose8(__m256i r[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20); r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20); r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20); r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20); r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

__attribute__((target("avx2")))
void automate_md5_x8(uint32_t state[32], const uint8_t *const data[8], size_t blocks) {
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i a = _mm256_loadu_si256((const __m256i *)(state + 0)), b = _mm256_loadu_si256((const __m256i *)(state + 8));
    __m256i c = _mm256_loadu_si256((const __m256i *)(state + 16)), d = _mm256_loadu_si256((const __m256i *)(state + 24));
    for (size_t n = 0; n < blocks; n++) {
        __m256i w[16];
        for (int l = 0; l < 8; l++) {
            w[l] = _mm256_loadu_si256((const __m256i *)(data[l] + n * 64));
            w[8 + l] = _mm256_loadu_si256((const __m256i *)(data[l] + n * 64 + 32));
        }
        transpose8(w);
        transpose8(w + 8);
        __m256i a0 = a, b0 = b, c0 = c, d0 = d;
        MD5_STEPS
        a = _mm256_add_epi32(a, a0); b = _mm256_add_epi32(b, b0);
        c = _mm256_add_epi32(c, c0); d = _mm256_add_epi32(d, d0);
    }
    _mm256_storeu_si256((__m256i *)(state + 0), a); _mm256_storeu_si256((__m256i *)(state + 8), b);
    _mm256_storeu_si256((__m256i *)(state + 16), c); _mm256_storeu_si256((__m256i *)(state + 24), d);
}

int automate_md5_x8_available(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
void automate_md5_x8(uint32_t state[32], const uint8_t *const data[8], size_t blocks) {
    for (int l = 0; l < 8; l++) {
        uint32_t s[4] = { state[l], state[8 + l], state[16 + l], state[24 + l] };
        automate_md5_blocks(s, data[l], blocks);
        state[l] = s[0]; state[8 + l] = s[1]; state[16 + l] = s[2]; state[24 + l] = s[3];
    }
}
int automate_md5_x8_available(void) { return 0; }
#endif
