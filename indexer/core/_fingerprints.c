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

static PyMethodDef Hasher_methods[] = {
    {"many", (PyCFunction)(void (*)(void))Hasher_many, METH_VARARGS | METH_KEYWORDS,
     "many(keys, drops=None) -> bytes: the 8-byte little-endian fingerprint of each key "
     "(drops[i] >= 0: of keys[i] without its character at that index)."},
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
    if (PyType_Ready(&HasherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HasherType);
    if (PyModule_AddObject(m, "Hasher", (PyObject *)&HasherType) < 0) {
        Py_DECREF(&HasherType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
