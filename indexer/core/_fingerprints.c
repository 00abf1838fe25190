/* Keyed BLAKE2b-64 fingerprints of many match keys in one call (indexer/core/fingerprint.py).
 *
 * The same function as Python's hashlib.blake2b(key, digest_size=8, person=...): libsodium's
 * BLAKE2b, keyed once, its state copied for each key. What this saves is not the hash but
 * the interpreter around it: one call fingerprints a whole chunk of keys, and a `similar`
 * query's one-letter deletions (docs/matching.md) are fingerprinted from its own key with
 * one character left out, without making a Python string for each.
 *
 * Hasher(key, person).many(keys, drops=None) -> bytes: 8 bytes a key, little-endian;
 * drops[i] >= 0 leaves out the character at that index of keys[i] (a code point, as
 * keys[i][:d] + keys[i][d + 1:] does). Nothing is kept between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sodium.h>
#include <string.h>

#define DIGEST_BYTES 8
/* Canonical keys are short (under 100 bytes); longer ones take the heap. */
#define STACK_KEY_BYTES 512

typedef struct {
    PyObject_HEAD
    crypto_generichash_blake2b_state *base; /* keyed, nothing hashed: copied per key */
} Hasher;

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
    if (crypto_generichash_blake2b_init_salt_personal(
            self->base, key.buf, (size_t)key.len, DIGEST_BYTES, NULL, personal) != 0) {
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

static void
digest_into(const crypto_generichash_blake2b_state *base, const unsigned char *text,
            size_t length, unsigned char *out)
{
    crypto_generichash_blake2b_state state;
    memcpy(&state, base, sizeof state);
    crypto_generichash_blake2b_update(&state, text, length);
    crypto_generichash_blake2b_final(&state, out, DIGEST_BYTES);
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
            digest_into(self->base, (const unsigned char *)utf8, (size_t)size,
                        out + i * DIGEST_BYTES);
            continue;
        }
        unsigned char *heap = NULL;
        size_t length;
        if (without_character(key, drop, cut, sizeof cut, &heap, &length) != 0)
            goto fail;
        digest_into(self->base, heap ? heap : cut, length, out + i * DIGEST_BYTES);
        PyMem_Free(heap);
    }
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
    const crypto_generichash_blake2b_state *base;
} Plan;

static void
plan_add(Plan *plan, const char *text, size_t length, int kind)
{
    digest_into(plan->base, (const unsigned char *)text, length,
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
    Plan plan = {NULL, NULL, 0, parts + 1 + (own.text ? 3 + own.length : 0), self->base};
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
