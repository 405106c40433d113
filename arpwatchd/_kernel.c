/* The repeat rules (issue 12): most frames on a LAN change nothing but times and counters,
 * and the interpreter's per-frame cost for proving so dominates a replay (DESIGN.md section
 * 8). This file is the only place those rules are written: without it every frame takes the
 * slow path (dpkt and the tracker), which is what each rule here must agree with exactly.
 *
 * `run` walks a batch once, in order. A frame is a provable repeat when, before the horizon
 * (a hold ending, deferred refreshes due):
 *   - its bytes are a remembered steady frame's (the memo: the tracker said that frame only
 *     refreshed its sender's own settled claim; a `Recent` table looked up straight from the
 *     batch's bytes, so a known frame costs no bytes object), or a first sighting of a claim
 *     known to a new target (`claim`, `claimed`: the sender's half is a remembered one's);
 *   - its binding was not silent for `inactive_after` since its last refresh, applied or
 *     pending (that is new activity: slow path), whatever the horizon: time steps back;
 *   - a request does not roll a flood or scan window into an alarm (`request`): the windows
 *     of `Senders.count_frame` / `count_target`, rolled the same way;
 *   - a reply answers a request on record within `solicit_window` (`reply`).
 * Its bookkeeping is done here: the request and answer tables refreshed at once (their
 * order decides evictions once full, as on the slow path), the sender's windows counted,
 * the binding's refresh recorded for later (`Pending`). Every other frame goes, in order, to
 * the `handle` callback (slow path, remembering, invalidation, flushes) and nothing of it is
 * changed here first.
 *
 * State lives in one place, the objects the tracker owns (its `Recent` tables of requests
 * and answers, _recent.c, which the tracker uses through their methods and this file through
 * `recent_get` / `recent_note`; SenderStats) and the fast path's memos and pending records;
 * the kernel reads and writes them through the context tuple `FastPath.kernel_context`
 * builds, so either side may act between frames.
 * Fields of the slotted objects (Steady, SenderStats, Pending) are read and written at their
 * slots' offsets, found once from the classes' member descriptors, as the interpreter's own
 * specialised attribute access does: a generic attribute look-up per field cost more than
 * the interpreter's (measured: the first version was 8 % slower than pure Python).
 *
 * Safe on any bytes: a record's offset and length are cut to the data as Python slices, a
 * frame is read at fixed offsets only once its length is checked (`arp_at`), and anything
 * of an unexpected type is not provable (handed back). Fuzzed: tests/test_kernel.py (also
 * under AddressSanitizer) and tests/test_fastpath_fuzz.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#include "_recent.h"

/* Slot offsets of the fields used here, per class, resolved by `layout`. */
enum { K_KEY, K_DOM, K_STATS, K_IS_REQUEST, K_TARGET, K_ASKED, K_ASKED_ANY, K_SHA, K_THA,
       K_DEPENDS, STEADY_FIELDS };
enum { F_FLOOD_START, F_FLOOD_COUNT, F_PENDING, F_FLOODING, F_SCAN_TARGETS, F_SCAN_START,
       F_SCANNING, STATS_FIELDS };
enum { P_LAST, PENDING_FIELDS };
static const char *steady_names[] = {"key", "dom", "stats", "is_request", "target", "asked",
                                     "asked_any", "sha", "tha", "depends"};
static const char *stats_names[] = {"flood_start", "flood_count", "pending", "flooding",
                                    "scan_targets", "scan_start", "scanning"};
static const char *pending_names[] = {"last"};

typedef struct {
    PyTypeObject *type;  /* borrowed: the context tuple holds the class while in use */
    Py_ssize_t offset[STEADY_FIELDS];
} Layout;

static Layout steady_layout, stats_layout, pending_layout;

/* Fills `layout` for `type` from its member descriptors (slots holding objects). */
static int layout(Layout *l, PyObject *type, const char **names, int count) {
    if (l->type == (PyTypeObject *)type) return 0;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "expected a class");
        return -1;
    }
    for (int k = 0; k < count; k++) {
        PyObject *d = PyObject_GetAttrString(type, names[k]);
        if (d == NULL) return -1;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type)
                 && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) l->offset[k] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s is not a slot", names[k]);
            return -1;
        }
    }
    l->type = (PyTypeObject *)type;
    return 0;
}

/* A field's value (borrowed), or NULL with AttributeError when the slot is empty. */
static PyObject *get(PyObject *obj, const Layout *l, int k) {
    PyObject *v = *(PyObject **)((char *)obj + l->offset[k]);
    if (v == NULL) PyErr_SetString(PyExc_AttributeError, "empty slot");
    return v;
}

static void set(PyObject *obj, const Layout *l, int k, PyObject *value) {
    PyObject **slot = (PyObject **)((char *)obj + l->offset[k]);
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
}

static int as_double(PyObject *v, double *out) {
    if (v == NULL) return -1;
    *out = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v) : PyFloat_AsDouble(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int as_long(PyObject *v, long long *out) {
    if (v == NULL) return -1;
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int as_bool(PyObject *v) {
    return v == NULL ? -1 : v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
}

static int set_long(PyObject *obj, const Layout *l, int k, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL) return -1;
    set(obj, l, k, v);
    Py_DECREF(v);
    return 0;
}

/* ctx: what `FastPath.kernel_context` binds once per batch, in this order. */
enum { C_MEMO, C_PENDING, C_RECORD, C_LAST_SEEN, C_ASKED, C_ANSWERS, C_FLOOD_WINDOW, C_FLOOD_FRAMES, C_SCAN_WINDOW, C_SCAN_TARGETS,
       C_SOLICIT, C_INACTIVE, C_STEADY, C_STATS, C_CLAIMS, C_ANSWERS_OWNER, C_CLAIMED,
       C_SIZE };

typedef struct {
    PyObject *pending, *record, *last_seen;
    Recent *memo, *asked, *answers;  /* the tracker's tables of requests and answers on record */
    PyObject *claims;  /* None: no first sighting is judged by its claim (see `claim`) */
    PyObject *answers_owner, *claimed;
    double flood_window, scan_window, solicit, inactive;
    long long flood_frames, scan_targets;
} Context;

/* A repeated request: 1 done, 0 not provable (nothing changed), -1 error. */
static int request(const Context *c, PyObject *s, double ts, PyObject *ts_obj) {
    const Layout *L = &stats_layout;
    PyObject *st = get(s, &steady_layout, K_STATS);
    if (st == NULL) return -1;
    if (!Py_IS_TYPE(st, L->type)) return 0;
    double flood_start, scan_start;
    long long flood_count, pend;
    int flooding, scanning;
    PyObject *targets = get(st, L, F_SCAN_TARGETS), *target = get(s, &steady_layout, K_TARGET);
    if (as_double(get(st, L, F_FLOOD_START), &flood_start) < 0
        || as_long(get(st, L, F_FLOOD_COUNT), &flood_count) < 0
        || as_long(get(st, L, F_PENDING), &pend) < 0
        || (flooding = as_bool(get(st, L, F_FLOODING))) < 0
        || (scanning = as_bool(get(st, L, F_SCANNING))) < 0
        || as_double(get(st, L, F_SCAN_START), &scan_start) < 0 || targets == NULL
        || target == NULL)
        return -1;
    if (targets != Py_None && !PySet_CheckExact(targets)) return 0;
    /* the windows of Senders.count_frame / count_target, rolled the same way, in locals */
    int flood_roll = ts - flood_start >= c->flood_window;
    if (flood_roll) {
        if (flood_count + pend <= c->flood_frames) flooding = 0;
        flood_count = pend = 0;
    }
    int scan_roll = targets == Py_None || ts - scan_start >= c->scan_window;
    Py_ssize_t size = 0;
    int contains = 0;
    if (scan_roll) {
        if (targets != Py_None && PySet_GET_SIZE(targets) <= c->scan_targets) scanning = 0;
    } else {
        size = PySet_GET_SIZE(targets);
        if ((contains = PySet_Contains(targets, target)) < 0) return -1;
    }
    /* a MAC already reported in this window cannot alarm again in it (a busy gateway), so
     * only the frame that would raise an alarm goes the slow way */
    if (!((flooding || flood_count + pend < c->flood_frames)
          && (contains || size != c->scan_targets || scanning)))
        return 0;
    /* from here on the tables may evict (dropping references): hold what is used after */
    PyObject *held[] = {st, target, get(s, &steady_layout, K_ASKED),
                        get(s, &steady_layout, K_ASKED_ANY)};
    if (held[2] == NULL || held[3] == NULL) return -1;
    for (int k = 0; k < 4; k++) Py_INCREF(held[k]);
    int result = -1;
    if (flood_roll) {
        set(st, L, F_FLOODING, flooding ? Py_True : Py_False);
        set(st, L, F_FLOOD_START, ts_obj);
        if (set_long(st, L, F_FLOOD_COUNT, 0) < 0) goto done;
    }
    if (scan_roll) {
        PyObject *fresh = PySet_New(NULL);
        if (fresh == NULL) goto done;
        set(st, L, F_SCANNING, scanning ? Py_True : Py_False);
        set(st, L, F_SCAN_START, ts_obj);
        set(st, L, F_SCAN_TARGETS, fresh);
        Py_DECREF(fresh);
        targets = fresh;  /* borrowed from st, held above */
    }
    if (size <= c->scan_targets && PySet_Add(targets, target) < 0) goto done;
    /* as the slow path: a refreshed request moves to the end of the table, so a full table
     * evicts the least recently asked (a key evicted meanwhile comes back under the cap) */
    for (int k = 2; k < 4; k++)
        if (recent_note(c->asked, held[k], ts_obj) < 0) goto done;
    if (set_long(st, L, F_PENDING, pend + 1) < 0) goto done;
    result = 1;
done:
    for (int k = 0; k < 4; k++) Py_DECREF(held[k]);
    return result;
}

/* A repeated reply, answering a request on record within solicit_window: 1, 0 or -1. */
static int reply(const Context *c, PyObject *s, PyObject *key, double ts, PyObject *ts_obj) {
    PyObject *asked = get(s, &steady_layout, K_ASKED), *sha = get(s, &steady_layout, K_SHA),
             *tha = get(s, &steady_layout, K_THA);
    if (asked == NULL || sha == NULL || tha == NULL) return -1;
    PyObject *at = recent_get(c->asked, asked);
    if (at == NULL) return PyErr_Occurred() ? -1 : 0;
    double asked_at;
    if (as_double(at, &asked_at) < 0) return -1;
    if (!(ts - asked_at <= c->solicit)) return 0;
    /* remembered at once, as the slow path does: once the table is full, its order decides
     * which answers a racing answer still finds */
    PyObject *value = PyTuple_Pack(3, sha, tha, ts_obj);
    if (value == NULL) return -1;
    int r = recent_note(c->answers, key, value);
    Py_DECREF(value);
    return r < 0 ? -1 : 1;
}

/* One frame found in the memo as `s` (held by the caller): 1 a request done, 2 a reply
 * done, 0 not provable (nothing changed), -1 error. */
static int repeat(const Context *c, PyObject *s, double ts, PyObject *ts_obj) {
    PyObject *key = get(s, &steady_layout, K_KEY);
    int is_request = as_bool(get(s, &steady_layout, K_IS_REQUEST));
    if (key == NULL || is_request < 0) return -1;
    Py_INCREF(key);
    int result = -1;
    /* a repeat after inactive_after of silence reports new activity: the slow path's. The
     * silence is measured from the binding's last refresh: the tracker's last_seen, or the
     * latest of the repeats waiting in its pending record (which only raise it). Neither the
     * horizon nor the time of the last flush bounds it: packet time can step back (captures
     * merged out of order, a clock stepped back), so a record can start long before the
     * last flush, and its next repeat come inactive_after later, still before the horizon. */
    PyObject *waiting = PyDict_GetItemWithError(c->pending, key);
    double last;
    if (waiting == NULL) {
        if (PyErr_Occurred()) goto done;
        PyObject *seen = PyObject_CallOneArg(c->last_seen, key);
        int r = as_double(seen, &last);
        Py_XDECREF(seen);
        if (r < 0) goto done;
    } else if (!Py_IS_TYPE(waiting, pending_layout.type)) {
        result = 0;
        goto done;
    } else if (as_double(get(waiting, &pending_layout, P_LAST), &last) < 0) {
        goto done;
    }
    /* with a record waiting, a silence measured from its last repeat may be shorter from the
     * tracker's last_seen (time stepped back since): the slow path, which applies the record
     * first, judges that one exactly */
    if (!(ts - last < c->inactive)) {
        result = 0;
        goto done;
    }
    Py_XINCREF(waiting);  /* the calls below run Python code that may change `pending` */
    result = is_request ? request(c, s, ts, ts_obj) : reply(c, s, key, ts, ts_obj);
    if (result == 1) {
        result = -1;
        if (waiting == NULL) {
            PyObject *dom = get(s, &steady_layout, K_DOM), *record = NULL;
            if (dom != NULL)
                record = PyObject_CallFunctionObjArgs(c->record, key, dom, ts_obj, NULL);
            if (record != NULL) {
                if (PyDict_SetItem(c->pending, key, record) == 0) result = is_request ? 1 : 2;
                Py_DECREF(record);
            }
        } else {
            /* `last` as read above: only this file writes a record's last (request and
             * reply run Python code, which never does). Merged captures can step back:
             * never lower last_seen. */
            if (ts > last) set(waiting, &pending_layout, P_LAST, ts_obj);
            result = is_request ? 1 : 2;
        }
    }
    Py_XDECREF(waiting);
done:
    Py_DECREF(key);
    return result;
}

/* ---- A known claim to a new target (most first sightings on a LAN) ----
 *
 * A host asking a peer it had not asked before, or the gateway answering a new host: the
 * sender's half of the frame (Ethernet source, ARP header, opcode, sender MAC and IP: frame
 * bytes 6 to the ARP body's 18th) is byte-identical to that of a remembered steady frame,
 * which dpkt decoded and the tracker judged. Only the target's half is new, at fixed offsets,
 * so it is read here and judged as the tracker would, instead of going through dpkt again.
 * The claims memo maps those sender's halves to the `Steady` of a frame that had them. */

/* Where the ARP body starts in an untagged or 802.1Q-tagged Ethernet frame long enough to
 * hold it; 0 for any other frame (QinQ, other TPIDs, short: the slow path decodes those). */
static Py_ssize_t arp_at(const unsigned char *f, Py_ssize_t n) {
    if (n >= 42 && f[12] == 0x08 && f[13] == 0x06) return 14;
    if (n >= 46 && f[12] == 0x81 && f[13] == 0x00 && f[16] == 0x08 && f[17] == 0x06) return 18;
    return 0;
}

/* An IPv6 frame (EtherType 0x86DD past any VLAN tags, as `decode.walk_tags` reads them):
 * the memo holds the NDP frames that stand for an ARP request or reply too */
static int is_ipv6(const char *f, Py_ssize_t n) {
    const unsigned char *u = (const unsigned char *)f;
    for (Py_ssize_t at = 12; at + 2 <= n; at += 4) {
        unsigned type = (unsigned)u[at] << 8 | u[at + 1];
        if (type != 0x8100 && type != 0x88A8 && type != 0x9100) return type == 0x86DD;
    }
    return 0;
}

static int any_mac(const unsigned char *m) {  /* zero or broadcast: "no one in particular" */
    static const unsigned char zero[6], ones[6] = {255, 255, 255, 255, 255, 255};
    return memcmp(m, zero, 6) == 0 || memcmp(m, ones, 6) == 0;
}

/* `ask_key(dom, ip)` (state.py): struct "!IIc" of the domain, the address and b"Q", then
 * `asker` (6 bytes) when given. */
static PyObject *ask_key(unsigned long long dom, unsigned long long ip,
                         const unsigned char *asker) {
    PyObject *k = PyBytes_FromStringAndSize(NULL, asker != NULL ? 15 : 9);
    if (k == NULL) return NULL;
    unsigned char *b = (unsigned char *)PyBytes_AS_STRING(k);
    for (int i = 0; i < 4; i++) {
        b[i] = (unsigned char)(dom >> (24 - 8 * i));
        b[4 + i] = (unsigned char)(ip >> (24 - 8 * i));
    }
    b[8] = 'Q';
    if (asker != NULL) memcpy(b + 9, asker, 6);
    return k;
}

/* `Steady.request(dom, spa, stats, sha, tha, tpa)` or `Steady.reply(...)`, built here (a
 * Python call per first sighting cost more than the rest of its proof); the fields are the
 * ones those class methods give. */
static PyObject *new_steady(PyObject *dom, PyObject *stats, PyObject *sha,
                            unsigned long long d, unsigned long long spa,
                            const unsigned char *tha, unsigned long long tpa, int is_request) {
    const Layout *L = &steady_layout;
    PyObject *v[STEADY_FIELDS] = {NULL};
    PyObject *s = NULL;
    const unsigned char *asker = is_request ? (const unsigned char *)PyBytes_AS_STRING(sha)
                                            : tha;
    v[K_KEY] = PyLong_FromUnsignedLongLong(d << 32 | spa);
    v[K_TARGET] = PyLong_FromUnsignedLongLong(tpa);
    v[K_ASKED] = ask_key(d, is_request ? tpa : spa, asker);
    v[K_ASKED_ANY] = ask_key(d, is_request ? tpa : spa, NULL);
    v[K_THA] = PyBytes_FromStringAndSize((const char *)tha, 6);
    v[K_DEPENDS] = is_request ? Py_NewRef(v[K_KEY] ? v[K_KEY] : Py_None)
                              : PyLong_FromUnsignedLongLong(d << 32 | tpa);
    v[K_DOM] = Py_NewRef(dom);
    v[K_STATS] = Py_NewRef(stats);
    v[K_SHA] = Py_NewRef(sha);
    v[K_IS_REQUEST] = Py_NewRef(is_request ? Py_True : Py_False);
    int ok = 1;
    for (int k = 0; k < STEADY_FIELDS; k++) ok &= v[k] != NULL;
    if (ok) s = L->type->tp_alloc(L->type, 0);
    if (s != NULL)
        for (int k = 0; k < STEADY_FIELDS; k++) set(s, L, k, v[k]);
    for (int k = 0; k < STEADY_FIELDS; k++) Py_XDECREF(v[k]);
    return s;
}

/* The `Steady` the tracker would give the frame `f` (ARP body at `at`), a first sighting of
 * the known steady claim `known` (same sender, MAC, IP and tag) to another target, sent with
 * opcode `is_request`; Py_None (a new reference) when that is not certain; NULL on error.
 * What the tracker does with a target (`Tracker._note_steady`, `Tracker.answers_owner`):
 * announcements (sender IP = target IP, target MAC none or the sender's) and answers to
 * probes are never steady; a reply to the broadcast or zero MAC is never remembered; a
 * reply's unicast target must be the owner of its address (or share it with the owner). */
static PyObject *claimed(const Context *c, const unsigned char *f, Py_ssize_t at,
                         PyObject *known, int is_request) {
    const unsigned char *tha = f + at + 18, *p = f + at + 24;
    unsigned long long tpa = (unsigned long long)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
    PyObject *key = get(known, &steady_layout, K_KEY), *dom = get(known, &steady_layout, K_DOM),
             *sha = get(known, &steady_layout, K_SHA),
             *stats = get(known, &steady_layout, K_STATS);
    if (key == NULL || dom == NULL || sha == NULL || stats == NULL) return NULL;
    if (!PyBytes_CheckExact(sha) || PyBytes_GET_SIZE(sha) != 6 || !PyLong_CheckExact(dom))
        Py_RETURN_NONE;
    unsigned long long spa = PyLong_AsUnsignedLongLongMask(key);
    long long d = PyLong_AsLongLong(dom);
    if ((d == -1 || spa == (unsigned long long)-1) && PyErr_Occurred()) return NULL;
    spa &= 0xFFFFFFFFull;
    if (d < 0 || d > 0x7FFFFFFF) Py_RETURN_NONE;
    int none = any_mac(tha);
    if (spa == tpa && (none || memcmp(tha, PyBytes_AS_STRING(sha), 6) == 0)) Py_RETURN_NONE;
    if (!is_request && (tpa == 0 || none)) Py_RETURN_NONE;
    if (!is_request && tpa != spa && !(tha[0] & 1)) {
        PyObject *args[2] = {PyLong_FromUnsignedLongLong((unsigned long long)d << 32 | tpa),
                             PyBytes_FromStringAndSize((const char *)tha, 6)};
        PyObject *owner = args[0] != NULL && args[1] != NULL
                          ? PyObject_Vectorcall(c->answers_owner, args, 2, NULL) : NULL;
        Py_XDECREF(args[0]);
        Py_XDECREF(args[1]);
        int ok = as_bool(owner);
        Py_XDECREF(owner);
        if (ok < 0) return NULL;
        if (!ok) Py_RETURN_NONE;
    }
    return new_steady(dom, stats, sha, (unsigned long long)d, spa, tha, tpa, is_request);
}

/* A frame not in the memo: 1 a request, 2 a reply proven by its known claim and done
 * (remembered through `claimed`, `FastPath._remember(frame, steady, half)`, so its repeats
 * are memo hits), 0 not provable, -1 error. */
static int claim(const Context *c, PyObject *frame, double ts, PyObject *ts_obj) {
    const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(frame);
    Py_ssize_t at = arp_at(f, PyBytes_GET_SIZE(frame));
    if (at == 0) return 0;
    PyObject *half = PyBytes_FromStringAndSize((const char *)f + 6, at + 12);
    if (half == NULL) return -1;
    int result = -1;
    PyObject *known = PyDict_GetItemWithError(c->claims, half), *s = NULL;
    int flip = 0;
    if (known == NULL) {
        if (PyErr_Occurred()) goto done;
        /* the same sender's claim with the other opcode will do: the sender, its MAC and IP
         * are what a claim vouches for (the tracker gives both opcodes the same binding and
         * statistics); the opcode only says which rules the frame meets. Any other opcode is
         * invalid (issue 15): never a repeat. */
        unsigned char op0 = f[at + 6], op1 = f[at + 7];
        if (op0 != 0 || (op1 != 1 && op1 != 2)) {
            result = 0;
            goto done;
        }
        PyObject *other = PyBytes_FromStringAndSize(NULL, at + 12);
        if (other == NULL) goto done;
        memcpy(PyBytes_AS_STRING(other), f + 6, (size_t)(at + 12));
        PyBytes_AS_STRING(other)[at + 1] = (char)(op1 == 1 ? 2 : 1);
        known = PyDict_GetItemWithError(c->claims, other);
        Py_DECREF(other);
        if (known == NULL) {
            result = PyErr_Occurred() ? -1 : 0;
            goto done;
        }
        flip = 1;
    }
    if (!Py_IS_TYPE(known, steady_layout.type)) {
        result = 0;
        goto done;
    }
    int is_request = as_bool(get(known, &steady_layout, K_IS_REQUEST));
    if (is_request < 0) goto done;
    Py_INCREF(known);  /* the calls below run Python code */
    s = claimed(c, f, at, known, is_request ^ flip);
    Py_DECREF(known);
    if (s == NULL) goto done;
    if (!Py_IS_TYPE(s, steady_layout.type)) {
        result = 0;
        goto done;
    }
    result = repeat(c, s, ts, ts_obj);
    if (result > 0) {
        PyObject *args[3] = {frame, s, half};
        PyObject *r = PyObject_Vectorcall(c->claimed, args, 3, NULL);
        if (r == NULL) result = -1;
        Py_XDECREF(r);
    }
done:
    Py_XDECREF(s);
    Py_DECREF(half);
    return result;
}

static int context(PyObject *const *item, Context *c) {
    c->memo = (Recent *)item[C_MEMO];
    c->pending = item[C_PENDING];
    c->record = item[C_RECORD];
    c->last_seen = item[C_LAST_SEEN];
    c->asked = (Recent *)item[C_ASKED];
    c->answers = (Recent *)item[C_ANSWERS];
    c->claims = item[C_CLAIMS];
    c->answers_owner = item[C_ANSWERS_OWNER];
    c->claimed = item[C_CLAIMED];
    if (!PyDict_Check(c->pending) || (c->claims != Py_None && !PyDict_Check(c->claims))) {
        PyErr_SetString(PyExc_TypeError, "pending and claims must be dicts");
        return -1;
    }
    if (!Py_IS_TYPE(item[C_MEMO], &RecentType) || !Py_IS_TYPE(item[C_ASKED], &RecentType)
        || !Py_IS_TYPE(item[C_ANSWERS], &RecentType)) {
        PyErr_SetString(PyExc_TypeError, "memo, asked and answers must be Recent tables");
        return -1;
    }
    if (layout(&steady_layout, item[C_STEADY], steady_names, STEADY_FIELDS) < 0
        || layout(&stats_layout, item[C_STATS], stats_names, STATS_FIELDS) < 0
        || layout(&pending_layout, item[C_RECORD], pending_names, PENDING_FIELDS) < 0)
        return -1;
    c->flood_window = PyFloat_AsDouble(item[C_FLOOD_WINDOW]);
    c->scan_window = PyFloat_AsDouble(item[C_SCAN_WINDOW]);
    c->solicit = PyFloat_AsDouble(item[C_SOLICIT]);
    c->inactive = PyFloat_AsDouble(item[C_INACTIVE]);
    c->flood_frames = PyLong_AsLongLong(item[C_FLOOD_FRAMES]);
    c->scan_targets = PyLong_AsLongLong(item[C_SCAN_TARGETS]);
    return PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(run_doc,
"run(context, data, meta, horizon, handle)\n"
"    -> (requests, replies, claimed, ndp_requests, ndp_replies)\n\n"
"Walks a batch (pcapy-ng's next_batch output) in order: each frame before `horizon` that it\n"
"proves a repeat it does (counted as an ARP request or reply, or an NDP solicitation or\n"
"solicited advertisement; claimed: the ARP ones that were first sightings proven by their\n"
"claim); every other frame goes to handle(ts, frame), which returns the new horizon.");

/* One crossing per batch: the frames it cannot prove are handed back through `handle` (the
 * slow path, then the fast path's bookkeeping) from inside the loop, which costs less than
 * returning to Python and being called again for the rest (a generator step, a re-read
 * context, a result tuple per hand-back). `handle` may run any Python code, so nothing
 * borrowed from the tables is kept across it; the context (dicts, callables, settings)
 * cannot change within a batch. */
static PyObject *run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != C_SIZE
        || !PyBytes_CheckExact(args[1]) || !PyBytes_CheckExact(args[2])
        || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "run(context: tuple, data: bytes, meta: bytes, horizon, handle)");
        return NULL;
    }
    Context c;
    if (context(&PyTuple_GET_ITEM(args[0], 0), &c) < 0) return NULL;
    double horizon = PyFloat_AsDouble(args[3]);
    if (horizon == -1.0 && PyErr_Occurred()) return NULL;
    PyObject *handle = args[4];
    /* the batch stays alive (and immutable) in the caller's frame while this runs */
    const char *data = PyBytes_AS_STRING(args[1]), *meta = PyBytes_AS_STRING(args[2]);
    uint64_t size = (uint64_t)PyBytes_GET_SIZE(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[2]) / 16;  /* a record cut short is no frame */
    long requests = 0, replies = 0, claimed = 0, ndp_requests = 0, ndp_replies = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t rec[4];  /* sec, usec, offset, length: native order, as pcapy-ng writes */
        memcpy(rec, meta + 16 * i, sizeof rec);
        /* `data[offset : offset + length]`, cut at the end of the data as Python slices */
        uint64_t start = rec[2] < size ? rec[2] : size, stop = (uint64_t)rec[2] + rec[3];
        if (stop > size) stop = size;
        if (stop < start) stop = start;
        double ts = (double)rec[0] + (double)rec[1] * 1e-6;  /* as `sec + usec * 1e-6` */
        const char *raw = data + start;
        Py_ssize_t len = (Py_ssize_t)(stop - start);
        PyObject *frame = NULL;  /* made only for a frame the memo does not know */
        PyObject *ts_obj = PyFloat_FromDouble(ts);
        int r = ts_obj != NULL ? 0 : -1;
        /* at the horizon (a hold ending, refreshes due) the slow path goes first */
        if (r == 0 && ts < horizon) {
            PyObject *s = recent_get_bytes(c.memo, raw, len, bytes_hash(raw, len));
            if (s != NULL) {
                if (Py_IS_TYPE(s, steady_layout.type)) {
                    Py_INCREF(s);
                    r = repeat(&c, s, ts, ts_obj);
                    /* an NDP frame remembered with the Steady of the ARP frame it stands for
                     * (an NS, a solicited NA) is counted apart */
                    if (r > 0 && is_ipv6(raw, len)) r += 2;
                    Py_DECREF(s);
                }
            } else if (c.claims != Py_None) {
                frame = PyBytes_FromStringAndSize(raw, len);
                r = frame != NULL ? claim(&c, frame, ts, ts_obj) : -1;
                claimed += r > 0;
            }
        }
        if (r == 0 && frame == NULL && (frame = PyBytes_FromStringAndSize(raw, len)) == NULL)
            r = -1;
        if (r == 0) {
            PyObject *argv[2] = {ts_obj, frame};
            PyObject *next = PyObject_Vectorcall(handle, argv, 2, NULL);
            r = next != NULL && as_double(next, &horizon) == 0 ? 0 : -1;
            Py_XDECREF(next);
        } else if (r == 1) {
            requests++;
        } else if (r == 2) {
            replies++;
        } else if (r == 3) {
            ndp_requests++;
        } else if (r == 4) {
            ndp_replies++;
        }
        Py_XDECREF(frame);
        Py_XDECREF(ts_obj);
        if (r < 0) return NULL;
    }
    return Py_BuildValue("(lllll)", requests, replies, claimed, ndp_requests, ndp_replies);
}

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL, run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "arpwatchd._kernel",
    "The fast path's repeat loop in C (see arpwatchd/_kernel.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (PyType_Ready(&RecentType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddObjectRef(m, "Recent", (PyObject *)&RecentType) < 0)
        Py_CLEAR(m);
    return m;
}
