/* The bounded tables of requests and answers on record (`Recent`, see _recent.c), shared by
 * the tracker (through the Python methods) and the kernel (through these functions). */
#ifndef ARPWATCHD_RECENT_H
#define ARPWATCHD_RECENT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    PyObject *key, *value;  /* NULL key: a free entry */
    Py_hash_t hash;
    int32_t older, newer;   /* the recency list, -1 at its ends; `newer` links free entries */
} RecentEntry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t cap, used;
    RecentEntry *entries;
    int32_t allocated, free, oldest, newest;
    int32_t *index;         /* open addressing by hash, linear probing; -1 empty */
    size_t mask;
    uint64_t version;       /* changes with every insertion and removal */
} Recent;

extern PyTypeObject RecentType;

/* The value on record for `key` (borrowed), NULL when none (and no error) or on error. */
PyObject *recent_get(Recent *t, PyObject *key);

/* Records `value` for `key` as the most recent: 0, or -1 on error. A key on record moves to
 * the end; a new one in a full table first evicts the oldest 1/64 (as `trim_oldest`). */
int recent_note(Recent *t, PyObject *key, PyObject *value);

/* The value on record for the bytes key `data[:size]` (borrowed) without a bytes object,
 * NULL when none: `hash` must be `bytes_hash(data, size)`. */
PyObject *recent_get_bytes(Recent *t, const char *data, Py_ssize_t size, Py_hash_t hash);

/* Python's hash of the bytes object `data[:size]`. */
static inline Py_hash_t bytes_hash(const char *data, Py_ssize_t size) {
#if PY_VERSION_HEX >= 0x030E0000
    return Py_HashBuffer(data, size);
#else
    return _Py_HashBytes(data, size);
#endif
}

#endif
