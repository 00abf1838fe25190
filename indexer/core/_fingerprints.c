/* Keyed BLAKE2b-64 fingerprints of many match keys in one call (indexer/core/fingerprint.py).
 *
 * The same function as Python's hashlib.blake2b(key, digest_size=8, person=...): libsodium's
 * BLAKE2b, keyed once, its state copied for each key. What this saves is not the hash but
 * the interpreter around it: one call fingerprints a whole chunk of keys, and a `similar`
 * query's one-letter deletions (docs/matching.md) are fingerprinted from its own key with
 * one character left out, without making a Python string for each.
 *
 * A keyed BLAKE2b hashes the key, padded to a block, before the message: two compressions
 * for a short key, the first always the same. libsodium's API cannot keep the state after
 * that first block (it compresses lazily, only once a later block arrives), so Hasher
 * compresses the key block once itself (RFC 7693's compression function, below) and each
 * message of up to one block then costs one compression, made for four messages at once
 * (final4). Longer or empty messages go through libsodium; tests/test_fingerprints.py
 * holds both equal to hashlib.
 *
 * Hasher(key, person).many(keys, drops=None) -> bytes: 8 bytes a key, little-endian;
 * drops[i] >= 0 leaves out the character at that index of keys[i] (a code point, as
 * keys[i][:d] + keys[i][d + 1:] does). Nothing is kept between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sodium.h>
#include <stdint.h>
#include <string.h>

#define DIGEST_BYTES 8
#define BLOCK_BYTES 128
/* Canonical keys are short (under 100 bytes); longer ones take the heap. */
#define STACK_KEY_BYTES 512

/* The keyed state: libsodium's (nothing hashed yet, copied per key), and the chaining
 * value after the key block (what one-block messages start from). Secret: it lives in
 * sodium_malloc'ed memory, zeroed when freed. */
typedef struct {
    crypto_generichash_blake2b_state sodium;
    uint64_t chain[8];
} Keyed;

typedef struct {
    PyObject_HEAD
    Keyed *base;
} Hasher;

/* --- RFC 7693's BLAKE2b compression, for the key block and one-block messages -------- */

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* RFC 7693's mixing, written once for a 64-bit word (compress) and for four of them in
 * vector lanes (final4): both have `v` and `m` arrays, and the operators are the same. */
#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define G(a, b, c, d, x, y)                                                            \
    do {                                                                               \
        v[a] = v[a] + v[b] + (x);                                                      \
        v[d] = ROTR64(v[d] ^ v[a], 32);                                                \
        v[c] = v[c] + v[d];                                                            \
        v[b] = ROTR64(v[b] ^ v[c], 24);                                                \
        v[a] = v[a] + v[b] + (y);                                                      \
        v[d] = ROTR64(v[d] ^ v[a], 16);                                                \
        v[c] = v[c] + v[d];                                                            \
        v[b] = ROTR64(v[b] ^ v[c], 63);                                                \
    } while (0)
/* The twelve rounds (unrolled: constant message indices, the message words stay in
 * registers). */
#define ROUNDS()                                                                       \
    _Pragma("GCC unroll 12") for (int r = 0; r < 12; r++) {                            \
        const uint8_t *s = SIGMA[r];                                                   \
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);                                              \
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);                                              \
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);                                             \
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);                                             \
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);                                             \
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);                                           \
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);                                            \
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);                                            \
    }

/* h <- F(h, block, t = counter, last block or not), RFC 7693 §3.2 (t < 2^64 here):
 * the key block, once per Hasher. */
static void
compress(uint64_t h[8], const unsigned char block[BLOCK_BYTES], uint64_t counter, int last)
{
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= counter;
    if (last)
        v[14] = ~v[14];
    ROUNDS();
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

/* --- the same, four messages at once -------------------------------------------------- */

typedef uint64_t u64x4 __attribute__((vector_size(32)));

/* Four one-block messages after the key block at once, a message a 64-bit lane (GCC's
 * vector extension: AVX2 where the processor has it, chosen at load time, else SSE2, which
 * every x86-64 has): compress() four times over, keeping only the first word of each
 * result, all an 8-byte digest needs. ~65 ns a message against ~165 for compress(). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void
final4(const uint64_t chain[8], const unsigned char blocks[4][BLOCK_BYTES],
       const uint64_t lengths[4], uint64_t first_words[4])
{
    u64x4 m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = (u64x4){load64(blocks[0] + 8 * i), load64(blocks[1] + 8 * i),
                       load64(blocks[2] + 8 * i), load64(blocks[3] + 8 * i)};
    for (int i = 0; i < 8; i++) {
        v[i] = (u64x4){chain[i], chain[i], chain[i], chain[i]};
        v[i + 8] = (u64x4){IV[i], IV[i], IV[i], IV[i]};
    }
    v[12] ^= (u64x4){BLOCK_BYTES + lengths[0], BLOCK_BYTES + lengths[1],
                     BLOCK_BYTES + lengths[2], BLOCK_BYTES + lengths[3]};
    v[14] = ~v[14];
    ROUNDS();
    u64x4 h0 = v[0] ^ v[8];
    for (int j = 0; j < 4; j++)
        first_words[j] = chain[0] ^ h0[j];
}

/* The chaining value after the key block: the parameter block (digest length, key
 * length, fan-out 1, depth 1, no salt, `personal`) applied to the IV, then the key
 * zero-padded to a block and compressed as a block that is not the last. */
static void
keyed_chain(uint64_t chain[8], const unsigned char *key, size_t key_length,
            const unsigned char personal[16])
{
    unsigned char block[BLOCK_BYTES] = {0};
    for (int i = 0; i < 8; i++)
        chain[i] = IV[i];
    chain[0] ^= 0x01010000ULL ^ ((uint64_t)key_length << 8) ^ DIGEST_BYTES;
    chain[6] ^= load64(personal);
    chain[7] ^= load64(personal + 8);
    memcpy(block, key, key_length);
    compress(chain, block, BLOCK_BYTES, 0);
    sodium_memzero(block, sizeof block);
}

static int
Hasher_init(Hasher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key", "person", NULL};
    Py_buffer key, person;
    unsigned char personal[crypto_generichash_blake2b_PERSONALBYTES] = {0};
    int status = -1;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*", kwlist, &key, &person))
        return -1;
    if (key.len < crypto_generichash_blake2b_KEYBYTES_MIN
        || key.len > crypto_generichash_blake2b_KEYBYTES_MAX) {
        PyErr_SetString(PyExc_ValueError, "the key must be 16 to 64 bytes");
        goto done;
    }
    if (person.len > crypto_generichash_blake2b_PERSONALBYTES) {
        PyErr_SetString(PyExc_ValueError, "person must be at most 16 bytes");
        goto done;
    }
    memcpy(personal, person.buf, (size_t)person.len); /* zero-padded, as hashlib does */
    if (self->base == NULL) {
        self->base = sodium_malloc(sizeof *self->base);
        if (self->base == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    keyed_chain(self->base->chain, key.buf, (size_t)key.len, personal);
    if (crypto_generichash_blake2b_init_salt_personal(
            &self->base->sodium, key.buf, (size_t)key.len, DIGEST_BYTES, NULL, personal) != 0) {
        PyErr_SetString(PyExc_ValueError, "BLAKE2b refused the key");
        goto done;
    }
    status = 0;
done:
    sodium_memzero(personal, sizeof personal);
    PyBuffer_Release(&key);
    PyBuffer_Release(&person);
    return status;
}

static void
Hasher_dealloc(Hasher *self)
{
    if (self->base != NULL)
        sodium_free(self->base); /* zeroes it */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A text no block holds (empty, or longer than a block: no canonical key) through
 * libsodium, from its keyed state. */
static void
sodium_digest(const Keyed *base, const unsigned char *text, size_t length, unsigned char *out)
{
    crypto_generichash_blake2b_state state;
    memcpy(&state, &base->sodium, sizeof state);
    crypto_generichash_blake2b_update(&state, text, length);
    crypto_generichash_blake2b_final(&state, out, DIGEST_BYTES);
}

/* Keys waiting to be fingerprinted four at a time: each is copied into a block of its
 * own, so the caller may reuse its text at once; its digest is written to `out` when the
 * batch is full or flushed (before the caller reads any digest). */
typedef struct {
    const Keyed *base;
    unsigned char blocks[4][BLOCK_BYTES];
    uint64_t lengths[4];
    unsigned char *outs[4];
    int pending;
} Batch;

static void
batch_flush(Batch *batch)
{
    if (batch->pending == 0)
        return;
    uint64_t first_words[4];
    for (int j = batch->pending; j < 4; j++) /* empty lanes: hashed, never written */
        batch->lengths[j] = 1;
    final4(batch->base->chain, (const unsigned char(*)[BLOCK_BYTES])batch->blocks,
           batch->lengths, first_words);
    for (int j = 0; j < batch->pending; j++)
        for (int i = 0; i < DIGEST_BYTES; i++)
            batch->outs[j][i] = (unsigned char)(first_words[j] >> (8 * i));
    batch->pending = 0;
}

static void
batch_add(Batch *batch, const unsigned char *text, size_t length, unsigned char *out)
{
    if (length == 0 || length > BLOCK_BYTES) {
        sodium_digest(batch->base, text, length, out);
        return;
    }
    unsigned char *block = batch->blocks[batch->pending];
    memcpy(block, text, length);
    memset(block + length, 0, BLOCK_BYTES - length);
    batch->lengths[batch->pending] = length;
    batch->outs[batch->pending] = out;
    if (++batch->pending == 4)
        batch_flush(batch);
}

/* The UTF-8 of `key` without its character at `drop`, into `out` (length in *length);
 * 0, or -1 with an exception set. ASCII keys (all canonical keys) are cut in place. */
static int
without_character(PyObject *key, Py_ssize_t drop, unsigned char *out, size_t capacity,
                  unsigned char **heap, size_t *length)
{
    Py_ssize_t characters = PyUnicode_GET_LENGTH(key);
    if (drop >= characters) {
        PyErr_SetString(PyExc_IndexError, "drop is past the end of its key");
        return -1;
    }
    if (PyUnicode_IS_ASCII(key)) {
        const unsigned char *text = PyUnicode_1BYTE_DATA(key);
        size_t total = (size_t)characters - 1;
        unsigned char *target = out;
        if (total > capacity) {
            target = *heap = PyMem_Malloc(total);
            if (target == NULL) {
                PyErr_NoMemory();
                return -1;
            }
        }
        memcpy(target, text, (size_t)drop);
        memcpy(target + drop, text + drop + 1, total - (size_t)drop);
        *length = total;
        return 0;
    }
    /* Not ASCII: the code point's UTF-8 bytes are found by encoding the prefix. */
    PyObject *head = PyUnicode_Substring(key, 0, drop);
    PyObject *tail = head ? PyUnicode_Substring(key, drop + 1, characters) : NULL;
    PyObject *joined = tail ? PyUnicode_Concat(head, tail) : NULL;
    Py_XDECREF(head);
    Py_XDECREF(tail);
    if (joined == NULL)
        return -1;
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(joined, &size);
    if (utf8 == NULL) {
        Py_DECREF(joined);
        return -1;
    }
    unsigned char *target = out;
    if ((size_t)size > capacity) {
        target = *heap = PyMem_Malloc((size_t)size);
        if (target == NULL) {
            Py_DECREF(joined);
            PyErr_NoMemory();
            return -1;
        }
    }
    memcpy(target, utf8, (size_t)size);
    *length = (size_t)size;
    Py_DECREF(joined);
    return 0;
}

static PyObject *
Hasher_many(Hasher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"keys", "drops", NULL};
    PyObject *keys_arg, *drops_arg = Py_None;
    PyObject *keys = NULL, *drops = NULL, *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O", kwlist, &keys_arg, &drops_arg))
        return NULL;
    keys = PySequence_Fast(keys_arg, "keys must be a sequence of str");
    if (keys == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(keys);
    if (drops_arg != Py_None) {
        drops = PySequence_Fast(drops_arg, "drops must be a sequence of int");
        if (drops == NULL)
            goto done;
        if (PySequence_Fast_GET_SIZE(drops) != count) {
            PyErr_SetString(PyExc_ValueError, "drops must have one entry per key");
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, count * DIGEST_BYTES);
    if (result == NULL)
        goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    PyObject **items = PySequence_Fast_ITEMS(keys);
    PyObject **drop_items = drops ? PySequence_Fast_ITEMS(drops) : NULL;
    unsigned char cut[STACK_KEY_BYTES];
    Batch batch = {.base = self->base};
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = items[i];
        if (!PyUnicode_Check(key)) {
            PyErr_Format(PyExc_TypeError, "keys[%zd] is not a str", i);
            goto fail;
        }
        Py_ssize_t drop = -1;
        if (drop_items != NULL) {
            drop = PyLong_AsSsize_t(drop_items[i]);
            if (drop == -1 && PyErr_Occurred())
                goto fail;
        }
        if (drop < 0) {
            Py_ssize_t size;
            const char *utf8 = PyUnicode_AsUTF8AndSize(key, &size);
            if (utf8 == NULL)
                goto fail;
            batch_add(&batch, (const unsigned char *)utf8, (size_t)size,
                      out + i * DIGEST_BYTES);
            continue;
        }
        unsigned char *heap = NULL;
        size_t length;
        if (without_character(key, drop, cut, sizeof cut, &heap, &length) != 0)
            goto fail;
        batch_add(&batch, heap ? heap : cut, length, out + i * DIGEST_BYTES);
        PyMem_Free(heap);
    }
    batch_flush(&batch);
    goto done;
fail:
    Py_CLEAR(result);
done:
    Py_XDECREF(keys);
    Py_XDECREF(drops);
    return result;
}

/* --- a similar query's probes (matchkeys.similar_probes, then many) ----------------- */

/* The probe kinds, as matchkeys.PROBE_* (tests/test_fingerprints.py holds them equal). */
enum { LAST_DELETION, FIRST_DELETION, OWN, SWAPPED, DAY_MONTH, DAY_MONTH_NIR, PART };

typedef struct {
    const char *text;
    Py_ssize_t length;
} Span;

typedef struct {
    unsigned char *digests, *kinds;
    Py_ssize_t count, room;
    Batch batch;
} Plan;

static void
plan_add(Plan *plan, const char *text, size_t length, int kind)
{
    batch_add(&plan->batch, (const unsigned char *)text, length,
              plan->digests + plan->count * DIGEST_BYTES);
    plan->kinds[plan->count++] = (unsigned char)kind;
}

/* The '|'-separated fields of `key` into fields[0..n-1]; 0 unless exactly n. */
static int
split_fields(Span key, Span *fields, int n)
{
    Py_ssize_t start = 0;
    int found = 0;
    for (Py_ssize_t i = 0; i <= key.length; i++) {
        if (i == key.length || key.text[i] == '|') {
            if (found == n)
                return 0;
            fields[found++] = (Span){key.text + start, i - start};
            start = i + 1;
        }
    }
    return found == n;
}

/* YYYY-MM-DD with day and month swapped into `out` (10 bytes), as
 * matchkeys._day_month_swapped: when both are "01" to "12" and differ. */
static int
day_month_swapped(Span date, char out[10])
{
    if (date.length != 10)
        return 0;
    const char *month = date.text + 5, *day = date.text + 8;
    if (memcmp(month, day, 2) == 0 || memcmp(day, "01", 2) < 0 || memcmp(day, "12", 2) > 0
        || memcmp(month, "01", 2) < 0 || memcmp(month, "12", 2) > 0)
        return 0;
    memcpy(out, date.text, 5);
    memcpy(out + 5, day, 2);
    out[7] = '-';
    memcpy(out + 8, month, 2);
    return 1;
}

/* Writes the pieces one after the other into `out` (STACK_KEY_BYTES); its length. */
static size_t
joined(unsigned char *out, const Span *pieces, int n)
{
    size_t length = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + length, pieces[i].text, (size_t)pieces[i].length);
        length += (size_t)pieces[i].length;
    }
    return length;
}

#define SPAN(literal) ((Span){literal, sizeof literal - 1})

static PyObject *
Hasher_similar(Hasher *self, PyObject *arg)
{
    PyObject *keys = PySequence_Fast(arg, "keys must be a sequence of str");
    if (keys == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(keys);
    PyObject **items = PySequence_Fast_ITEMS(keys);
    Span nir = {NULL, 0}, own = {NULL, 0}, whole = {NULL, 0};
    Py_ssize_t parts = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        /* Only canonical keys, which are ASCII and short: anything else is left to
         * matchkeys.similar_probes (the caller's fallback, None here). */
        if (!PyUnicode_Check(items[i]) || !PyUnicode_IS_ASCII(items[i]))
            goto fallback;
        Span key = {(const char *)PyUnicode_1BYTE_DATA(items[i]), PyUnicode_GET_LENGTH(items[i])};
        if (key.length == 0 || key.length + 8 > STACK_KEY_BYTES)
            goto fallback;
        if (key.text[0] == 's')
            nir = key;
        else if (key.text[0] == 'w') {
            if (own.text == NULL)
                own = key;
            else
                whole = key;
        } else
            parts++;
    }
    Span own_fields[4], fields[4], strong[3];
    if ((own.text != NULL && !split_fields(own, own_fields, 4))
        || (whole.text != NULL && !split_fields(whole, fields, 4))
        || (nir.text != NULL && !split_fields(nir, strong, 3)))
        goto fallback;
    Plan plan = {NULL, NULL, 0, parts + 1 + (own.text ? 3 + own.length : 0),
                 {.base = self->base}};
    PyObject *digests = PyBytes_FromStringAndSize(NULL, plan.room * DIGEST_BYTES);
    PyObject *kinds = PyBytes_FromStringAndSize(NULL, plan.room);
    if (digests == NULL || kinds == NULL) {
        Py_XDECREF(digests);
        Py_XDECREF(kinds);
        Py_DECREF(keys);
        return NULL;
    }
    plan.digests = (unsigned char *)PyBytes_AS_STRING(digests);
    plan.kinds = (unsigned char *)PyBytes_AS_STRING(kinds);
    unsigned char text[STACK_KEY_BYTES];
    char swapped[10];
    for (Py_ssize_t i = 0; i < count; i++) { /* "part|..." looked up as "weak|..." */
        Span key = {(const char *)PyUnicode_1BYTE_DATA(items[i]), PyUnicode_GET_LENGTH(items[i])};
        if (key.text[0] == 's' || key.text[0] == 'w')
            continue;
        Span pieces[2] = {SPAN("weak"), {key.text + 4, key.length > 4 ? key.length - 4 : 0}};
        plan_add(&plan, (const char *)text, joined(text, pieces, 2), PART);
    }
    if (nir.text != NULL && day_month_swapped(strong[2], swapped)) {
        Span pieces[4] = {SPAN("strong|"), strong[1], SPAN("|"), {swapped, 10}};
        plan_add(&plan, (const char *)text, joined(text, pieces, 4), DAY_MONTH_NIR);
    }
    if (own.text != NULL) {
        Span last = own_fields[1], first = own_fields[2], date = own_fields[3];
        plan_add(&plan, own.text, (size_t)own.length, OWN);
        /* One letter left out of the last name, then of the first given name. */
        const Span *names[2] = {&last, &first};
        const int name_kinds[2] = {LAST_DELETION, FIRST_DELETION};
        for (int n = 0; n < 2; n++) {
            if (names[n]->length < 2)
                continue;
            Py_ssize_t at = names[n]->text - own.text;
            for (Py_ssize_t d = at; d < at + names[n]->length; d++) {
                memcpy(text, own.text, (size_t)d);
                memcpy(text + d, own.text + d + 1, (size_t)(own.length - d - 1));
                plan_add(&plan, (const char *)text, (size_t)own.length - 1, name_kinds[n]);
            }
        }
        Span given = whole.text != NULL ? fields[2] : first;
        /* As long as the whole key when the keys are canonical (the same fields in
         * another order); checked for any others, which could be longer. */
        if (given.length + last.length + date.length + 7 > STACK_KEY_BYTES)
            goto overlong;
        Span names_swapped[6] = {SPAN("weak|"), given, SPAN("|"), last, SPAN("|"), date};
        plan_add(&plan, (const char *)text, joined(text, names_swapped, 6), SWAPPED);
        if (day_month_swapped(date, swapped)) {
            Span pieces[6] = {SPAN("weak|"), last, SPAN("|"), first, SPAN("|"), {swapped, 10}};
            plan_add(&plan, (const char *)text, joined(text, pieces, 6), DAY_MONTH);
        }
    }
    batch_flush(&plan.batch); /* before the resize, which may move the digests */
    Py_DECREF(keys);
    if (_PyBytes_Resize(&digests, plan.count * DIGEST_BYTES) != 0) {
        Py_DECREF(kinds);
        return NULL;
    }
    if (_PyBytes_Resize(&kinds, plan.count) != 0) {
        Py_DECREF(digests);
        return NULL;
    }
    return Py_BuildValue("(NN)", digests, kinds);
overlong:
    Py_DECREF(digests);
    Py_DECREF(kinds);
fallback:
    Py_DECREF(keys);
    Py_RETURN_NONE;
}

static PyMethodDef Hasher_methods[] = {
    {"many", (PyCFunction)(void (*)(void))Hasher_many, METH_VARARGS | METH_KEYWORDS,
     "many(keys, drops=None) -> bytes: the 8-byte little-endian fingerprint of each key "
     "(drops[i] >= 0: of keys[i] without its character at that index)."},
    {"similar", (PyCFunction)Hasher_similar, METH_O,
     "similar(keys) -> (digests, kinds): the fingerprints and kinds of a query's similar "
     "probes (matchkeys.similar_probes then many), or None for keys it leaves to them."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HasherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "indexer.core._fingerprints.Hasher",
    .tp_doc = PyDoc_STR("Hasher(key, person): keyed BLAKE2b with an 8-byte digest."),
    .tp_basicsize = sizeof(Hasher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Hasher_init,
    .tp_dealloc = (destructor)Hasher_dealloc,
    .tp_methods = Hasher_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "indexer.core._fingerprints",
    .m_doc = "Keyed BLAKE2b-64 fingerprints of many keys in one call (libsodium).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fingerprints(void)
{
    if (sodium_init() < 0) {
        PyErr_SetString(PyExc_ImportError, "libsodium could not be initialised");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &HasherType) < 0) { /* readies it, adds a reference */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
