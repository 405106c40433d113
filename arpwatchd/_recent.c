/* `Recent`: a bounded map of key -> value in recency order, the tables of requests and answers
 * on record (issue 12). The tracker notes every request (two keys) and answer, and the
 * kernel refreshes them for every repeat: as a dict, a refresh was a delete and an insert
 * (~650 instructions, a fifth of a /24's replay, and dummies a dict must resize away). Here a
 * refresh is one probe and a move to the end of a linked list.
 *
 * Behaviour is `senders.PyRecent`'s exactly (tests/test_recent.py runs both side by side):
 * keys compare as Python compares them, a key on record moves to the end when noted again,
 * and a new key noted into a full table first evicts the oldest cap // 64 (at least one),
 * as `trim_oldest` does, so the same entries fall out whichever table runs.
 *
 * Layout: entries in one array (grown by doubling up to the cap, never shrunk), linked
 * oldest to newest; an index of entry numbers by hash (open addressing, linear probing, at
 * most half full, deletion by backward shift: no tombstones to clean up). */
#include "_recent.h"

#include <string.h>

#define MAX_CAP ((Py_ssize_t)1 << 30)

static size_t home(const Recent *t, Py_hash_t hash) {
    /* Fibonacci hashing: an int's hash is the int, and keys of neighbouring addresses
     * would otherwise fill runs of neighbouring slots that every miss walks */
    return (size_t)(((uint64_t)hash * 0x9E3779B97F4A7C15ull) >> 32) & t->mask;
}

/* 1 equal, 0 not, -1 error; bytes (the request keys) without the generic comparison */
static int same(PyObject *a, PyObject *b) {
    if (PyBytes_CheckExact(a) && PyBytes_CheckExact(b))
        return PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b)
               && memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b),
                         (size_t)PyBytes_GET_SIZE(a)) == 0;
    return PyObject_RichCompareBool(a, b, Py_EQ);
}

/* The entry of `key`, -1 when absent (`*slot`: where it would go), -2 on error. */
static int32_t find(Recent *t, PyObject *key, Py_hash_t hash, size_t *slot) {
restart:;
    uint64_t version = t->version;
    for (size_t i = home(t, hash);; i = (i + 1) & t->mask) {
        int32_t e = t->index[i];
        if (e < 0) {
            *slot = i;
            return -1;
        }
        RecentEntry *en = &t->entries[e];
        if (en->hash != hash) continue;
        if (en->key == key) return e;
        PyObject *other = Py_NewRef(en->key);  /* a comparison may run Python code */
        int eq = same(other, key);
        Py_DECREF(other);
        if (eq < 0) return -2;
        if (t->version != version) goto restart;
        if (eq) return e;
    }
}

/* Rebuilds the index for `slots` (a power of two) from the recency list. */
static int reindex(Recent *t, size_t slots) {
    int32_t *index = PyMem_Malloc(slots * sizeof *index);
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(index, 0xff, slots * sizeof *index);
    PyMem_Free(t->index);
    t->index = index;
    t->mask = slots - 1;
    for (int32_t e = t->oldest; e >= 0; e = t->entries[e].newer) {
        size_t i = home(t, t->entries[e].hash);
        while (index[i] >= 0) i = (i + 1) & t->mask;
        index[i] = e;
    }
    return 0;
}

/* More free entries (doubling, up to the cap): 0, or -1 on error. */
static int grow(Recent *t) {
    Py_ssize_t limit = t->cap > 0 ? t->cap : 1;
    int32_t old = t->allocated, more = old < 8 ? 8 : old * 2;
    if (more > limit) more = (int32_t)limit;
    if (more <= old) {
        PyErr_SetString(PyExc_RuntimeError, "Recent: table full");  /* not reached */
        return -1;
    }
    RecentEntry *entries = PyMem_Realloc(t->entries, (size_t)more * sizeof *entries);
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->entries = entries;
    for (int32_t e = old; e < more; e++) {
        entries[e] = (RecentEntry){NULL, NULL, 0, -1, e + 1 < more ? e + 1 : t->free};
    }
    t->free = old;
    t->allocated = more;
    size_t slots = 16;
    while (slots < 2 * (size_t)more) slots *= 2;
    return slots > t->mask + 1 ? reindex(t, slots) : 0;
}

static void unlink_entry(Recent *t, int32_t e) {
    RecentEntry *en = &t->entries[e];
    if (en->older >= 0) t->entries[en->older].newer = en->newer;
    else t->oldest = en->newer;
    if (en->newer >= 0) t->entries[en->newer].older = en->older;
    else t->newest = en->older;
}

static void append(Recent *t, int32_t e) {
    RecentEntry *en = &t->entries[e];
    en->older = t->newest;
    en->newer = -1;
    if (t->newest >= 0) t->entries[t->newest].newer = e;
    else t->oldest = e;
    t->newest = e;
}

/* Removes entry `e` from the index (backward shift: later entries of its run move up). */
static void unindex(Recent *t, int32_t e) {
    size_t i = home(t, t->entries[e].hash);
    while (t->index[i] != e) i = (i + 1) & t->mask;
    for (size_t j = i;;) {
        j = (j + 1) & t->mask;
        int32_t f = t->index[j];
        if (f < 0) break;
        size_t h = home(t, t->entries[f].hash);
        /* `f` may move to the hole at i unless its home lies cyclically in (i, j] */
        if (i <= j ? (i < h && h <= j) : (i < h || h <= j)) continue;
        t->index[i] = f;
        i = j;
    }
    t->index[i] = -1;
}

/* Takes entry `e` out of the table, handing over its key and value references. */
static void detach(Recent *t, int32_t e, PyObject **key, PyObject **value) {
    RecentEntry *en = &t->entries[e];
    *key = en->key;
    *value = en->value;
    unindex(t, e);
    unlink_entry(t, e);
    en->key = en->value = NULL;
    en->newer = t->free;
    t->free = e;
    t->used--;
    t->version++;
}

/* Evicts the `count` oldest entries; their references are dropped once the table is whole. */
static void evict(Recent *t, Py_ssize_t count) {
    while (count-- > 0 && t->oldest >= 0) {
        PyObject *key, *value;
        detach(t, t->oldest, &key, &value);
        Py_DECREF(key);
        Py_DECREF(value);
    }
}

PyObject *recent_get_bytes(Recent *t, const char *data, Py_ssize_t size, Py_hash_t hash) {
    for (size_t i = home(t, hash);; i = (i + 1) & t->mask) {
        int32_t e = t->index[i];
        if (e < 0) return NULL;
        RecentEntry *en = &t->entries[e];
        /* only a bytes key equals bytes (a subclass's __eq__ is never asked) */
        if (en->hash == hash && PyBytes_CheckExact(en->key) && PyBytes_GET_SIZE(en->key) == size
            && memcmp(PyBytes_AS_STRING(en->key), data, (size_t)size) == 0)
            return en->value;
    }
}

/* Removes `key`: 1 when it was on record (its value in `*value`, a new reference), 0 when not,
 * -1 on error. */
static int recent_pop(Recent *t, PyObject *key, PyObject **value) {
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return -1;
    size_t slot;
    int32_t e = find(t, key, hash, &slot);
    if (e < 0) return e == -1 ? 0 : -1;
    PyObject *old;
    detach(t, e, &old, value);
    Py_DECREF(old);
    return 1;
}

PyObject *recent_get(Recent *t, PyObject *key) {
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return NULL;
    size_t slot;
    int32_t e = find(t, key, hash, &slot);
    return e >= 0 ? t->entries[e].value : NULL;
}

int recent_note(Recent *t, PyObject *key, PyObject *value) {
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) return -1;
    size_t slot;
    int32_t e = find(t, key, hash, &slot);
    if (e == -2) return -1;
    if (e >= 0) {
        RecentEntry *en = &t->entries[e];
        if (t->newest != e) {
            unlink_entry(t, e);
            append(t, e);
        }
        Py_SETREF(en->value, Py_NewRef(value));
        return 0;
    }
    if (t->used >= t->cap) evict(t, t->cap / 64 > 1 ? t->cap / 64 : 1);
    if (t->free < 0 && grow(t) < 0) return -1;
    /* eviction or growth moved things: find the empty slot again */
    for (slot = home(t, hash); t->index[slot] >= 0; slot = (slot + 1) & t->mask) {
    }
    e = t->free;
    RecentEntry *en = &t->entries[e];
    t->free = en->newer;
    en->key = Py_NewRef(key);
    en->value = Py_NewRef(value);
    en->hash = hash;
    append(t, e);
    t->index[slot] = e;
    t->used++;
    t->version++;
    return 0;
}

/* ---- the Python face: what `senders.PyRecent` offers ---- */

static PyObject *recent_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Py_ssize_t cap;
    static char *names[] = {"cap", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:Recent", names, &cap)) return NULL;
    if (cap < 0 || cap > MAX_CAP) {
        PyErr_Format(PyExc_ValueError, "Recent: cap must be 0..%zd", MAX_CAP);
        return NULL;
    }
    Recent *t = (Recent *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    t->cap = cap;
    t->free = t->oldest = t->newest = -1;
    if (reindex(t, 16) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static int recent_traverse(Recent *t, visitproc visit, void *arg) {
    for (int32_t e = t->oldest; e >= 0; e = t->entries[e].newer) {
        Py_VISIT(t->entries[e].key);
        Py_VISIT(t->entries[e].value);
    }
    return 0;
}

static int recent_clear(Recent *t) {
    evict(t, t->used);
    return 0;
}

static void recent_dealloc(Recent *t) {
    PyObject_GC_UnTrack(t);
    recent_clear(t);
    PyMem_Free(t->entries);
    PyMem_Free(t->index);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *py_note(Recent *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "note(key, value)");
        return NULL;
    }
    if (recent_note(t, args[0], args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_get(Recent *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    PyObject *v = recent_get(t, args[0]);
    if (v == NULL && PyErr_Occurred()) return NULL;
    return Py_NewRef(v != NULL ? v : nargs == 2 ? args[1] : Py_None);
}

/* `ts - value <= window` for the key on record: 1, 0, or -1 on error */
static int within(Recent *t, PyObject *const *args, double *ts) {
    PyObject *v = recent_get(t, args[0]);
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    double last = PyFloat_AsDouble(v), window;
    if (last == -1.0 && PyErr_Occurred()) return -1;
    if ((*ts = PyFloat_AsDouble(args[1])) == -1.0 && PyErr_Occurred()) return -1;
    if ((window = PyFloat_AsDouble(args[2])) == -1.0 && PyErr_Occurred()) return -1;
    return *ts - last <= window;
}

static PyObject *py_within(Recent *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "within(key, ts, window)");
        return NULL;
    }
    double ts;
    int r = within(t, args, &ts);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static PyObject *py_first_in(Recent *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "first_in(key, ts, window)");
        return NULL;
    }
    double ts;
    int r = within(t, args, &ts);
    if (r < 0) return NULL;
    if (r) Py_RETURN_FALSE;
    if (recent_note(t, args[0], args[1]) < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *py_pop(Recent *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key[, default])");
        return NULL;
    }
    PyObject *value;
    int found = recent_pop(t, args[0], &value);
    if (found < 0) return NULL;
    if (found) return value;
    if (nargs == 2) return Py_NewRef(args[1]);
    PyErr_SetObject(PyExc_KeyError, args[0]);
    return NULL;
}

static PyObject *py_clear(Recent *t, PyObject *Py_UNUSED(ignored)) {
    evict(t, t->used);
    Py_RETURN_NONE;
}

static PyObject *py_items(Recent *t, PyObject *Py_UNUSED(ignored)) {
    PyObject *list = PyList_New(0);
    for (int32_t e = t->oldest; list != NULL && e >= 0; e = t->entries[e].newer) {
        PyObject *pair = PyTuple_Pack(2, t->entries[e].key, t->entries[e].value);
        if (pair == NULL || PyList_Append(list, pair) < 0) Py_CLEAR(list);
        Py_XDECREF(pair);
    }
    return list;
}

static Py_ssize_t recent_len(Recent *t) { return t->used; }

static int recent_contains(Recent *t, PyObject *key) {
    PyObject *v = recent_get(t, key);
    return v != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

static PyMethodDef recent_methods[] = {
    {"note", (PyCFunction)(void (*)(void))py_note, METH_FASTCALL,
     "note(key, value): records value for key as the most recent."},
    {"get", (PyCFunction)(void (*)(void))py_get, METH_FASTCALL,
     "get(key, default=None): the value on record."},
    {"within", (PyCFunction)(void (*)(void))py_within, METH_FASTCALL,
     "within(key, ts, window): whether key was noted at most window before ts."},
    {"first_in", (PyCFunction)(void (*)(void))py_first_in, METH_FASTCALL,
     "first_in(key, ts, window): True (and notes ts) unless within(key, ts, window)."},
    {"pop", (PyCFunction)(void (*)(void))py_pop, METH_FASTCALL,
     "pop(key[, default]): removes key, giving its value (KeyError without a default)."},
    {"clear", (PyCFunction)py_clear, METH_NOARGS, "clear(): forgets every entry."},
    {"items", (PyCFunction)py_items, METH_NOARGS, "items(): (key, value), oldest first."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods recent_sequence = {
    .sq_length = (lenfunc)recent_len,
    .sq_contains = (objobjproc)recent_contains,
};

PyTypeObject RecentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "arpwatchd._kernel.Recent",
    .tp_doc = "Recent(cap): a bounded map of key -> value, oldest evicted first (_recent.c).",
    .tp_basicsize = sizeof(Recent),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = recent_new,
    .tp_dealloc = (destructor)recent_dealloc,
    .tp_traverse = (traverseproc)recent_traverse,
    .tp_clear = (inquiry)recent_clear,
    .tp_methods = recent_methods,
    .tp_as_sequence = &recent_sequence,
};
