/* Lookups of fingerprints in a mapped generation, in C (indexer/index/reader.py, similar.py).
 *
 * The same answers as the numpy and plain-Python paths of reader.py and similar.py (the
 * tests hold them equal): what this saves is the interpreter. A `similar` query looks
 * up some twenty probes one by one (docs/matching.md), which in Python cost ~2 µs each
 * and in numpy ~20 µs of call overhead per batch; here ~0.1 µs.
 *
 * Exact(shards, n_sources): shards = [(fingerprints, meta, bloom_bits, num_slices,
 *     bits_per_slice), ...], one per shard, buffers as the reader maps them (sorted
 *     little-endian uint64; n_sources bytes a fingerprint; the Bloom filter's packed bits
 *     after its header). one(fp) -> the meta row, None when absent or all zero;
 *     hits(fps) -> (positions, rows): the int64 positions (ascending) of the
 *     fingerprints present, and their rows, concatenated.
 * Tier(shards, n_sources, shard_count): shards = [(values, offsets, rows, bucket_bits,
 *     row_bits), ...] as similar.py writes them. one(fp) and hits(fps) as above (a
 *     tier row is returned as it is stored).
 * Similar(exact, tier, exact_tags, places): the lookups of a `similar` query's probes
 *     (indexer/index/lookup.py), per probe kind k: the exact index when exact_tags[k]
 *     is not 0, the tier under fp ^ mask for each (mask, tag) of places[k].
 *     check(queries, digests, similar): a chunk of queries answered in one call, each
 *     from its canonical keys: the exact keys first (fingerprinted by `digests`), and
 *     only when none matched, the probes `similar(keys)` plans (fingerprints and a kind
 *     byte each), every hit as its tag byte and its row, sorted, each once; the hits of
 *     each query, as lookup.py keys its verdicts.
 *
 * Both keep the buffers exported until they are deallocated, and check every size
 * once at construction so that no lookup can read outside them, whatever the files hold.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL

/* --- what both types share ----------------------------------------------------------- */

typedef struct {
    Py_buffer views[3];
    int held;            /* how many of views are exported */
} Buffers;

static int
take_buffers(Buffers *b, PyObject *spec, Py_ssize_t shard)
{
    for (int i = 0; i < 3; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(spec, i), &b->views[i], PyBUF_SIMPLE) != 0) {
            PyErr_Format(PyExc_TypeError, "shard %zd: item %d is not a buffer", shard, i);
            return -1;
        }
        b->held = i + 1;
    }
    return 0;
}

static void
release_buffers(Buffers *b, Py_ssize_t count)
{
    if (b == NULL)
        return;
    for (Py_ssize_t s = 0; s < count; s++)
        for (int i = 0; i < b[s].held; i++)
            PyBuffer_Release(&b[s].views[i]);
}

/* What Exact and Tier start with alike: `shards` as a list of 5-tuples (returned, a new
 * reference), zeroed room for their buffers and for the shards (`size` bytes each,
 * into *room), their count; NULL with an exception set. */
static PyObject *
shard_specs(PyObject *shards, Py_ssize_t n_sources, Buffers **buffers, size_t size,
            void **room, Py_ssize_t *count)
{
    if (*buffers != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return NULL;
    }
    if (n_sources < 1) {
        PyErr_SetString(PyExc_ValueError, "n_sources must be at least 1");
        return NULL;
    }
    PyObject *specs = PySequence_Fast(shards, "shards must be a sequence of tuples");
    if (specs == NULL)
        return NULL;
    *count = PySequence_Fast_GET_SIZE(specs);
    for (Py_ssize_t s = 0; s < *count; s++) {
        PyObject *spec = PySequence_Fast_GET_ITEM(specs, s);
        if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 5) {
            PyErr_Format(PyExc_TypeError, "shard %zd: expected a tuple of 5 items", s);
            Py_DECREF(specs);
            return NULL;
        }
    }
    *buffers = PyMem_Calloc((size_t)(*count ? *count : 1), sizeof **buffers);
    *room = PyMem_Calloc((size_t)(*count ? *count : 1), size);
    if (*buffers == NULL || *room == NULL) {
        Py_DECREF(specs);
        return PyErr_NoMemory(); /* what was allocated is freed with the object */
    }
    return specs;
}

/* A shard's numbers that are not small non-negative ints (a damaged manifest): a
 * ValueError like every other inconsistency, whatever the conversion raised. */
static int
out_of_range(Py_ssize_t shard)
{
    PyErr_Clear();
    PyErr_Format(PyExc_ValueError, "shard %zd: a size is out of range", shard);
    return -1;
}

static int
read_fingerprint(PyObject *arg, uint64_t *fp)
{
    *fp = PyLong_AsUnsignedLongLong(arg);
    if (*fp == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "a fingerprint is an int from 0 to 2**64 - 1");
        return -1;
    }
    return 0;
}

/* The fingerprints of a batch: a contiguous buffer of 8-byte items (a uint64 array). */
static int
read_batch(PyObject *arg, Py_buffer *view, Py_ssize_t *count)
{
    if (PyObject_GetBuffer(arg, view, PyBUF_SIMPLE) != 0)
        return -1;
    if (view->len % 8 != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "fingerprints must be 8-byte items");
        return -1;
    }
    *count = view->len / 8;
    return 0;
}

static inline uint64_t
batch_item(const Py_buffer *view, Py_ssize_t i)
{
    uint64_t fp;
    memcpy(&fp, (const char *)view->buf + i * 8, 8); /* the buffer may be unaligned */
    return fp;
}

static inline Py_ssize_t
shard_of(uint64_t fp, Py_ssize_t shard_count)
{
    return (Py_ssize_t)(((fp >> 32) * (uint64_t)shard_count) >> 32);
}

/* Collects (position, row) pairs of a batch; the result tuple at the end. */
typedef struct {
    int64_t *positions;
    unsigned char *rows;
    Py_ssize_t found, row_bytes;
} Found;

static int
found_start(Found *f, Py_ssize_t count, Py_ssize_t row_bytes)
{
    f->found = 0;
    f->row_bytes = row_bytes;
    f->positions = PyMem_Malloc((size_t)(count ? count : 1) * sizeof *f->positions);
    f->rows = PyMem_Malloc((size_t)(count ? count : 1) * (size_t)(row_bytes ? row_bytes : 1));
    if (f->positions == NULL || f->rows == NULL) {
        PyMem_Free(f->positions);
        PyMem_Free(f->rows);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static inline void
found_add(Found *f, Py_ssize_t position, const unsigned char *row)
{
    f->positions[f->found] = position;
    memcpy(f->rows + f->found * f->row_bytes, row, (size_t)f->row_bytes);
    f->found++;
}

static PyObject *
found_result(Found *f)
{
    PyObject *result = Py_BuildValue(
        "(y#y#)", (const char *)f->positions, f->found * (Py_ssize_t)sizeof *f->positions,
        (const char *)f->rows, f->found * f->row_bytes);
    PyMem_Free(f->positions);
    PyMem_Free(f->rows);
    return result;
}

/* The row of one fingerprint in an index (exact or tier), NULL when absent. */
typedef const unsigned char *(*RowOf)(const void *index, uint64_t fp);

static PyObject *
one_row(const void *index, RowOf row_of, Py_ssize_t shard_count, Py_ssize_t n_sources,
        PyObject *arg)
{
    uint64_t fp;
    if (read_fingerprint(arg, &fp) != 0)
        return NULL;
    const unsigned char *row = shard_count ? row_of(index, fp) : NULL;
    if (row == NULL)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)row, n_sources);
}

static PyObject *
batch_rows(const void *index, RowOf row_of, Py_ssize_t shard_count, Py_ssize_t n_sources,
           PyObject *arg)
{
    Py_buffer view;
    Py_ssize_t count;
    Found found;
    if (read_batch(arg, &view, &count) != 0)
        return NULL;
    if (found_start(&found, shard_count ? count : 0, n_sources) != 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count && shard_count; i++) {
        const unsigned char *row = row_of(index, batch_item(&view, i));
        if (row != NULL)
            found_add(&found, i, row);
    }
    PyBuffer_Release(&view);
    return found_result(&found);
}

/* --- the exact index: Bloom filter, then binary search ------------------------------- */

typedef struct {
    const uint64_t *fingerprints;
    Py_ssize_t count;
    const unsigned char *meta;
    const unsigned char *bloom;
    uint64_t num_slices, bits_per_slice;
} ExactShard;

typedef struct {
    PyObject_HEAD
    ExactShard *shards;
    Buffers *buffers;
    Py_ssize_t shard_count, n_sources;
} Exact;

static int
Exact_init(Exact *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"shards", "n_sources", NULL};
    PyObject *shards;
    Py_ssize_t n_sources, count;
    void *room = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kwlist, &shards, &n_sources))
        return -1;
    PyObject *specs = shard_specs(shards, n_sources, &self->buffers, sizeof *self->shards,
                                  &room, &count);
    if (room != NULL) /* freed with the object, even when the rest failed */
        self->shards = room;
    if (specs == NULL)
        return -1;
    self->shard_count = count;
    self->n_sources = n_sources;
    for (Py_ssize_t s = 0; s < count; s++) {
        PyObject *spec = PySequence_Fast_GET_ITEM(specs, s);
        ExactShard *shard = &self->shards[s];
        if (take_buffers(&self->buffers[s], spec, s) != 0)
            goto fail;
        const Py_buffer *v = self->buffers[s].views;
        shard->num_slices = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, 3));
        shard->bits_per_slice = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(spec, 4));
        if (PyErr_Occurred() && out_of_range(s) != 0)
            goto fail;
        shard->fingerprints = v[0].buf;
        shard->count = v[0].len / 8;
        shard->meta = v[1].buf;
        shard->bloom = v[2].buf;
        if (v[0].len % 8 != 0 || v[1].len != shard->count * n_sources) {
            PyErr_Format(PyExc_ValueError, "shard %zd: fingerprint and meta sizes disagree", s);
            goto fail;
        }
        /* An empty shard's filter is never read; a filled one must hold every bit. */
        if (shard->count && (shard->bits_per_slice == 0 || shard->num_slices == 0
                             || shard->num_slices > 64
                             || shard->bits_per_slice > (uint64_t)PY_SSIZE_T_MAX / 64
                             || (uint64_t)v[2].len * 8
                                    < shard->num_slices * shard->bits_per_slice)) {
            PyErr_Format(PyExc_ValueError, "shard %zd: Bloom filter size inconsistent", s);
            goto fail;
        }
    }
    Py_DECREF(specs);
    return 0;
fail:
    Py_DECREF(specs);
    return -1;
}

/* Exact and Tier alike: the same fields lead both structs. */
static void
mapped_dealloc(PyObject *object)
{
    Exact *self = (Exact *)object;
    release_buffers(self->buffers, self->shard_count);
    PyMem_Free(self->buffers);
    PyMem_Free(self->shards);
    Py_TYPE(object)->tp_free(object);
}

/* `fp in bloom` as bloom.bloom_has_one: slice i tests bit (h1 + i * h2) % m of slice i. */
static inline int
bloom_has(const ExactShard *shard, uint64_t fp)
{
    uint64_t m = shard->bits_per_slice;
    uint64_t h2 = ((fp >> 32) * GOLDEN) >> 32 | 1;
    uint64_t position = (fp & 0xFFFFFFFFULL) % m, step = h2 % m, base = 0;
    for (uint64_t i = 0; i < shard->num_slices; i++) {
        uint64_t bit = position + base;
        if (!((shard->bloom[bit >> 3] >> (bit & 7)) & 1))
            return 0;
        position += step;
        if (position >= m)
            position -= m;
        base += m;
    }
    return 1;
}

/* The meta row of `fp`, NULL when absent or all zero (a stored fingerprint without any
 * class bit counts as absent, as in reader.py). */
static const unsigned char *
exact_row(const void *index, uint64_t fp)
{
    const Exact *self = index;
    const ExactShard *shard = &self->shards[shard_of(fp, self->shard_count)];
    if (!shard->count || !bloom_has(shard, fp))
        return NULL;
    Py_ssize_t lo = 0, hi = shard->count;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (shard->fingerprints[mid] < fp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == shard->count || shard->fingerprints[lo] != fp)
        return NULL;
    const unsigned char *row = shard->meta + lo * self->n_sources;
    for (Py_ssize_t i = 0; i < self->n_sources; i++)
        if (row[i])
            return row;
    return NULL;
}

static PyObject *
Exact_one(Exact *self, PyObject *arg)
{
    return one_row(self, exact_row, self->shard_count, self->n_sources, arg);
}

static PyObject *
Exact_hits(Exact *self, PyObject *arg)
{
    return batch_rows(self, exact_row, self->shard_count, self->n_sources, arg);
}

/* --- the similar tier: a bucket, then binary search ---------------------------------- */

typedef struct {
    const uint32_t *values;
    Py_ssize_t count;
    const uint32_t *offsets;
    const unsigned char *rows;
    Py_ssize_t n_rows;
    unsigned int bucket_bits, row_bits;
} TierShard;

typedef struct {
    PyObject_HEAD
    TierShard *shards;
    Buffers *buffers;
    Py_ssize_t shard_count, n_sources; /* the fields of Exact, in its order */
} Tier;

static int
Tier_init(Tier *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"shards", "n_sources", "shard_count", NULL};
    PyObject *shards;
    Py_ssize_t n_sources, shard_count, count;
    void *room = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Onn", kwlist, &shards, &n_sources,
                                     &shard_count))
        return -1;
    PyObject *specs = shard_specs(shards, n_sources, &self->buffers, sizeof *self->shards,
                                  &room, &count);
    if (room != NULL) /* freed with the object, even when the rest failed */
        self->shards = room;
    if (specs == NULL)
        return -1;
    if (count != shard_count) {
        PyErr_SetString(PyExc_ValueError, "one shard spec per shard");
        Py_DECREF(specs);
        return -1;
    }
    self->shard_count = count;
    self->n_sources = n_sources;
    for (Py_ssize_t s = 0; s < count; s++) {
        PyObject *spec = PySequence_Fast_GET_ITEM(specs, s);
        TierShard *shard = &self->shards[s];
        if (take_buffers(&self->buffers[s], spec, s) != 0)
            goto fail;
        const Py_buffer *v = self->buffers[s].views;
        long bucket_bits = PyLong_AsLong(PyTuple_GET_ITEM(spec, 3));
        long row_bits = PyLong_AsLong(PyTuple_GET_ITEM(spec, 4));
        if (PyErr_Occurred() && out_of_range(s) != 0)
            goto fail;
        shard->values = v[0].buf;
        shard->count = v[0].len / 4;
        shard->offsets = v[1].buf;
        shard->rows = v[2].buf;
        shard->n_rows = v[2].len / n_sources;
        shard->bucket_bits = (unsigned int)bucket_bits;
        shard->row_bits = (unsigned int)row_bits;
        int sizes_ok = v[0].len % 4 == 0 && v[2].len % n_sources == 0
                       && bucket_bits >= 0 && bucket_bits <= 24 && row_bits >= 1
                       && row_bits <= 31;
        /* An empty shard may have no offsets at all; otherwise 2**bucket_bits + 1. */
        if (sizes_ok && shard->count)
            sizes_ok = v[1].len == ((Py_ssize_t)1 << bucket_bits) * 4 + 4;
        if (!sizes_ok) {
            PyErr_Format(PyExc_ValueError, "similar shard %zd: sizes inconsistent", s);
            goto fail;
        }
    }
    Py_DECREF(specs);
    return 0;
fail:
    Py_DECREF(specs);
    return -1;
}

/* The bucket of `fp` in its shard (the offsets entry where its lookup starts). */
static inline uint64_t
tier_bucket(const Tier *self, const TierShard *shard, uint64_t fp)
{
    if (!shard->bucket_bits)
        return 0;
    uint64_t fraction = ((fp >> 32) * (uint64_t)self->shard_count) & 0xFFFFFFFFULL;
    return fraction >> (32 - shard->bucket_bits);
}

/* A prefetch the compiler keeps: GCC 12's dead-code pass deletes __builtin_prefetch
 * in these loops (nothing reads what they compute), leaving no prefetch at all. */
static inline void
fetch(const void *address)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)address));
#else
    __builtin_prefetch(address);
#endif
}

/* Asks the memory for the first thing each lookup of `fp` reads (an exact lookup's first
 * Bloom bit, a tier lookup's bucket offsets) without waiting: a query's thirty lookups
 * then wait for memory about once together instead of thirty times one after another. */
static inline void
prefetch_exact(const Exact *self, uint64_t fp)
{
    const ExactShard *shard = &self->shards[shard_of(fp, self->shard_count)];
    if (shard->count)
        fetch(shard->bloom + ((fp & 0xFFFFFFFFULL) % shard->bits_per_slice) / 8);
}

static inline void
prefetch_tier(const Tier *self, uint64_t fp)
{
    const TierShard *shard = &self->shards[shard_of(fp, self->shard_count)];
    if (shard->count)
        fetch(shard->offsets + tier_bucket(self, shard, fp));
}

/* Then, its offsets read, the values a tier lookup searches (a bucket spans a line or
 * two): the second wait, again shared by all of a query's lookups. */
static inline void
prefetch_bucket(const Tier *self, uint64_t fp)
{
    const TierShard *shard = &self->shards[shard_of(fp, self->shard_count)];
    if (!shard->count)
        return;
    uint64_t bucket = tier_bucket(self, shard, fp);
    uint32_t lo = shard->offsets[bucket], hi = shard->offsets[bucket + 1];
    if (lo < hi && hi <= shard->count) {
        fetch(shard->values + lo);
        fetch(shard->values + hi - 1);
    }
}

/* The stored row of `fp`, NULL when absent (as similar.SimilarTier.one). Offsets and
 * row ids are clamped: a damaged file gives wrong answers, never a read outside it. */
static const unsigned char *
tier_row(const void *index, uint64_t fp)
{
    const Tier *self = index;
    const TierShard *shard = &self->shards[shard_of(fp, self->shard_count)];
    if (!shard->count)
        return NULL;
    uint64_t bucket = tier_bucket(self, shard, fp);
    Py_ssize_t lo = shard->offsets[bucket], hi = shard->offsets[bucket + 1];
    if (hi > shard->count)
        hi = shard->count;
    if (lo > hi)
        lo = hi;
    Py_ssize_t end = hi;
    uint32_t low = (uint32_t)(fp & ((1ULL << (32 - shard->row_bits)) - 1));
    uint32_t target = low << shard->row_bits;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (shard->values[mid] < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == end || shard->values[lo] >> shard->row_bits != low)
        return NULL;
    Py_ssize_t row = shard->values[lo] & ((1U << shard->row_bits) - 1);
    if (row >= shard->n_rows)
        return NULL;
    return shard->rows + row * self->n_sources;
}

static PyObject *
Tier_one(Tier *self, PyObject *arg)
{
    return one_row(self, tier_row, self->shard_count, self->n_sources, arg);
}

static PyObject *
Tier_hits(Tier *self, PyObject *arg)
{
    return batch_rows(self, tier_row, self->shard_count, self->n_sources, arg);
}

/* --- a similar query's probes: every lookup of docs/matching.md in one call ----------- */

#define MAX_KINDS 16
#define MAX_PLACES 8

typedef struct {
    PyObject_HEAD
    Exact *exact;
    Tier *tier;
    Py_ssize_t n_kinds, width; /* width: a tag byte, then a row */
    unsigned char exact_tag[MAX_KINDS]; /* 0: not looked up in the exact index */
    Py_ssize_t n_places[MAX_KINDS];
    uint64_t place_mask[MAX_KINDS][MAX_PLACES];
    unsigned char place_tag[MAX_KINDS][MAX_PLACES];
} Similar;

static PyTypeObject ExactType, TierType;

static int
Similar_init(Similar *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"exact", "tier", "exact_tags", "places", NULL};
    PyObject *exact, *tier, *places;
    Py_buffer tags;
    if (self->exact != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!y*O", kwlist, &ExactType, &exact,
                                     &TierType, &tier, &tags, &places))
        return -1;
    int status = -1;
    PyObject *kinds = PySequence_Fast(places, "places must be a sequence per kind");
    if (kinds == NULL)
        goto done;
    Py_ssize_t n_kinds = tags.len;
    if (n_kinds > MAX_KINDS || PySequence_Fast_GET_SIZE(kinds) != n_kinds
        || ((Exact *)exact)->n_sources != ((Tier *)tier)->n_sources) {
        PyErr_SetString(PyExc_ValueError,
                        "one tag and one place list per kind (at most 16), and the same "
                        "sources in the exact index and the tier");
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_kinds; k++) {
        self->exact_tag[k] = ((const unsigned char *)tags.buf)[k];
        PyObject *pairs = PySequence_Fast(PySequence_Fast_GET_ITEM(kinds, k),
                                          "places[k] must be a sequence of (mask, tag)");
        if (pairs == NULL)
            goto done;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(pairs);
        if (n > MAX_PLACES) {
            PyErr_SetString(PyExc_ValueError, "at most 8 places per kind");
            Py_DECREF(pairs);
            goto done;
        }
        for (Py_ssize_t p = 0; p < n; p++) {
            unsigned long long mask;
            unsigned char tag;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(pairs, p), "Kb", &mask, &tag)) {
                Py_DECREF(pairs);
                goto done;
            }
            self->place_mask[k][p] = mask;
            self->place_tag[k][p] = tag;
        }
        self->n_places[k] = n;
        Py_DECREF(pairs);
    }
    Py_INCREF(exact);
    Py_INCREF(tier);
    self->exact = (Exact *)exact;
    self->tier = (Tier *)tier;
    self->n_kinds = n_kinds;
    self->width = 1 + self->exact->n_sources;
    status = 0;
done:
    Py_XDECREF(kinds);
    PyBuffer_Release(&tags);
    return status;
}

static void
Similar_dealloc(Similar *self)
{
    Py_XDECREF(self->exact);
    Py_XDECREF(self->tier);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t sort_width; /* qsort has no context argument; the GIL is held */

static int
compare_entries(const void *a, const void *b)
{
    return memcmp(a, b, (size_t)sort_width);
}

/* Every lookup of a similar query's probes (fps, a kind byte each): the hits, each a tag
 * byte and a row, sorted, each once; NULL with an exception set. */
static PyObject *
similar_hits(Similar *self, const Py_buffer *fps, Py_ssize_t count,
             const unsigned char *kinds)
{
    PyObject *result = NULL;
    unsigned char *entries = NULL;
    Py_ssize_t width = self->width, found = 0;
    entries = PyMem_Malloc((size_t)(count ? count : 1) * (1 + MAX_PLACES) * (size_t)width);
    if (entries == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n_sources = width - 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char kind = kinds[i];
        if (kind >= self->n_kinds) {
            PyErr_Format(PyExc_ValueError, "kinds[%zd] is not a known kind", i);
            goto done;
        }
        uint64_t fp = batch_item(fps, i);
        if (self->exact_tag[kind] && self->exact->shard_count)
            prefetch_exact(self->exact, fp);
        for (Py_ssize_t p = 0; p < self->n_places[kind] && self->tier->shard_count; p++)
            prefetch_tier(self->tier, fp ^ self->place_mask[kind][p]);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char kind = kinds[i];
        uint64_t fp = batch_item(fps, i);
        for (Py_ssize_t p = 0; p < self->n_places[kind] && self->tier->shard_count; p++)
            prefetch_bucket(self->tier, fp ^ self->place_mask[kind][p]);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned char kind = kinds[i];
        uint64_t fp = batch_item(fps, i);
        const unsigned char *row;
        if (self->exact_tag[kind] && self->exact->shard_count
            && (row = exact_row(self->exact, fp)) != NULL) {
            entries[found * width] = self->exact_tag[kind];
            memcpy(entries + found * width + 1, row, (size_t)n_sources);
            found++;
        }
        for (Py_ssize_t p = 0; p < self->n_places[kind] && self->tier->shard_count; p++) {
            if ((row = tier_row(self->tier, fp ^ self->place_mask[kind][p])) != NULL) {
                entries[found * width] = self->place_tag[kind][p];
                memcpy(entries + found * width + 1, row, (size_t)n_sources);
                found++;
            }
        }
    }
    /* Sorted, each entry once: the cache key of the query's verdict. */
    sort_width = width;
    qsort(entries, (size_t)found, (size_t)width, compare_entries);
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < found; i++) {
        if (kept && memcmp(entries + (kept - 1) * width, entries + i * width, (size_t)width) == 0)
            continue;
        if (kept != i)
            memcpy(entries + kept * width, entries + i * width, (size_t)width);
        kept++;
    }
    result = PyBytes_FromStringAndSize((const char *)entries, kept * width);
done:
    PyMem_Free(entries);
    return result;
}

/* The hits of one query given as its canonical keys (see check below); NULL with an
 * exception set. */
static PyObject *
query_hits(Similar *self, PyObject *query, PyObject *digests, PyObject *similar)
{
    PyObject *keys = PySequence_Fast(query, "a query must be a sequence of keys");
    if (keys == NULL)
        return NULL;
    PyObject *result = NULL, *exact_keys = NULL, *fps = NULL, *planned = NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(keys), n_exact = 0;
    PyObject **items = PySequence_Fast_ITEMS(keys);
    unsigned char tags[64];
    /* The strong and weak keys come first, the `part` probes last (similar only). */
    for (; n_exact < count; n_exact++) {
        PyObject *key = items[n_exact];
        Py_UCS4 first = 0;
        if (!PyUnicode_Check(key) || PyUnicode_GET_LENGTH(key) == 0
            || ((first = PyUnicode_READ_CHAR(key, 0)) != 's' && first != 'w' && first != 'p')) {
            PyErr_SetString(PyExc_ValueError, "a key is not a canonical key");
            goto done;
        }
        if (first == 'p')
            break;
        if (n_exact == (Py_ssize_t)sizeof tags) {
            PyErr_SetString(PyExc_ValueError, "too many exact keys in one query");
            goto done;
        }
        tags[n_exact] = (unsigned char)first;
    }
    if (n_exact && self->exact->shard_count) {
        exact_keys = n_exact == count ? Py_NewRef(keys) : PySequence_GetSlice(keys, 0, n_exact);
        if (exact_keys == NULL)
            goto done;
        fps = PyObject_CallOneArg(digests, exact_keys);
        if (fps == NULL)
            goto done;
        if (!PyBytes_Check(fps) || PyBytes_GET_SIZE(fps) != n_exact * 8) {
            PyErr_SetString(PyExc_ValueError, "digests must give 8 bytes a key");
            goto done;
        }
        const char *digest = PyBytes_AS_STRING(fps);
        uint64_t fp[64];
        for (Py_ssize_t k = 0; k < n_exact; k++) {
            memcpy(&fp[k], digest + k * 8, 8);
            prefetch_exact(self->exact, fp[k]);
        }
        Py_ssize_t width = self->width, found = 0;
        unsigned char entries[64 * (1 + 255)];
        if (width > 256) {
            PyErr_SetString(PyExc_ValueError, "too many sources");
            goto done;
        }
        for (Py_ssize_t k = 0; k < n_exact; k++) {
            const unsigned char *row = exact_row(self->exact, fp[k]);
            if (row != NULL) {
                entries[found * width] = tags[k];
                memcpy(entries + found * width + 1, row, (size_t)(width - 1));
                found++;
            }
        }
        if (found) {
            result = PyBytes_FromStringAndSize((const char *)entries, found * width);
            goto done;
        }
    }
    /* No exact key matched: the similar probes, planned by the caller's function. */
    planned = PyObject_CallOneArg(similar, keys);
    if (planned == NULL)
        goto done;
    Py_buffer probe_fps, kinds;
    if (!PyTuple_Check(planned) || !PyArg_ParseTuple(planned, "y*y*", &probe_fps, &kinds)) {
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "similar must give (fingerprints, kinds)");
        }
        goto done;
    }
    if (probe_fps.len % 8 != 0 || kinds.len != probe_fps.len / 8)
        PyErr_SetString(PyExc_ValueError, "similar must give one kind per 8-byte fingerprint");
    else
        result = similar_hits(self, &probe_fps, kinds.len, kinds.buf);
    PyBuffer_Release(&probe_fps);
    PyBuffer_Release(&kinds);
done:
    Py_XDECREF(planned);
    Py_XDECREF(fps);
    Py_XDECREF(exact_keys);
    Py_DECREF(keys);
    return result;
}

static PyObject *
Similar_check(Similar *self, PyObject *args)
{
    PyObject *queries_arg, *digests, *similar;
    if (self->exact == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOO", &queries_arg, &digests, &similar))
        return NULL;
    PyObject *queries = PySequence_Fast(queries_arg, "queries must be a sequence");
    if (queries == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(queries);
    PyObject *result = PyList_New(n);
    for (Py_ssize_t i = 0; i < n && result != NULL; i++) {
        PyObject *hits = query_hits(self, PySequence_Fast_GET_ITEM(queries, i), digests, similar);
        if (hits == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, i, hits);
    }
    Py_DECREF(queries);
    return result;
}

static PyMethodDef Similar_methods[] = {
    {"check", (PyCFunction)Similar_check, METH_VARARGS,
     "check(queries, digests, similar) -> [bytes]: per query (its canonical keys), the "
     "hits of its strong and weak keys (digests(keys) -> 8 bytes a key), each a tag byte "
     "('s' or 'w') and its row, in key order; if none, found(*similar(keys)); b'' when "
     "nothing matched."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SimilarType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "indexer.index._lookups.Similar",
    .tp_doc = PyDoc_STR("Similar(exact, tier, exact_tags, places): a similar query's lookups."),
    .tp_basicsize = sizeof(Similar),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Similar_init,
    .tp_dealloc = (destructor)Similar_dealloc,
    .tp_methods = Similar_methods,
};

/* --- the module ---------------------------------------------------------------------- */

static PyMethodDef Exact_methods[] = {
    {"one", (PyCFunction)Exact_one, METH_O,
     "one(fp) -> the meta row of fp, None when absent or all zero."},
    {"hits", (PyCFunction)Exact_hits, METH_O,
     "hits(fps) -> (int64 positions, rows) of the fingerprints present, ascending."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Tier_methods[] = {
    {"one", (PyCFunction)Tier_one, METH_O, "one(fp) -> the tier row of fp, None when absent."},
    {"hits", (PyCFunction)Tier_hits, METH_O,
     "hits(fps) -> (int64 positions, rows) of the fingerprints present, ascending."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ExactType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "indexer.index._lookups.Exact",
    .tp_doc = PyDoc_STR("Exact(shards, n_sources): the exact index's shards, mapped."),
    .tp_basicsize = sizeof(Exact),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Exact_init,
    .tp_dealloc = mapped_dealloc,
    .tp_methods = Exact_methods,
};

static PyTypeObject TierType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "indexer.index._lookups.Tier",
    .tp_doc = PyDoc_STR("Tier(shards, n_sources, shard_count): the similar tier, mapped."),
    .tp_basicsize = sizeof(Tier),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tier_init,
    .tp_dealloc = mapped_dealloc,
    .tp_methods = Tier_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "indexer.index._lookups",
    .m_doc = "Lookups of fingerprints in a mapped generation (exact index, similar tier).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__lookups(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* PyModule_AddType readies each type and adds a reference of its own. */
    if (PyModule_AddType(m, &ExactType) < 0 || PyModule_AddType(m, &TierType) < 0
        || PyModule_AddType(m, &SimilarType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
