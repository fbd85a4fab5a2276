/*
 * hftkit._native: the two per-level loops every depth message runs, in C (and a few other
 * per-event loops: the rate gate's credits, the latency histograms' record).
 *
 * Why this exists: in CPython a depth level costs ~200 ns of interpreter work (two dict
 * lookups of freshly decoded strings, a tuple, a bisect, dict updates). These functions do
 * exactly what their pure-Python twins do (hftkit.core.numbers / hftkit.book.order_book)
 * over the same Python objects, so every other part of the book stays plain Python and
 * the pure path remains the reference: the test suite checks both against each other.
 *
 * Nothing here decides a hard case. Text the fast decimal path does not accept (signs,
 * exponents, off-grid digits, more than 18 significant digits, non-ASCII) goes to the
 * grid's Python ``slow`` callable, which converts or raises the classified error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define MAX_DIGITS 18 /* 10**18 < 2**63: every accepted value fits an int64 */
/* Longer text goes to ``slow``, which refuses it: hftkit.core.numbers.MAX_DECIMAL_LENGTH, the
 * same bound, so both paths refuse "000...0001" alike (exported as MAX_DECIMAL_LENGTH). */
#define MAX_TEXT_LENGTH 64

static const int64_t POWERS_OF_TEN[MAX_DIGITS + 1] = {
    1LL,
    10LL,
    100LL,
    1000LL,
    10000LL,
    100000LL,
    1000000LL,
    10000000LL,
    100000000LL,
    1000000000LL,
    10000000000LL,
    100000000000LL,
    1000000000000LL,
    10000000000000LL,
    100000000000000LL,
    1000000000000000LL,
    10000000000000000LL,
    100000000000000000LL,
    1000000000000000000LL,
};

/* ------------------------------------------------------------------------------------- */
/* Grid: decimal string -> whole number of grid steps                                     */
/* ------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int scale;          /* decimal places of the grid */
    int64_t step_units; /* the step is step_units / 10**scale */
    int64_t minimum;    /* fewer steps than this go to ``slow`` (which raises) */
    PyObject *slow;     /* callable(text) -> int: the exact Python conversion */
} GridObject;

/*
 * Plain unsigned decimals only: digits, optionally "." and at least one more digit.
 * Returns 1 with *steps set, or 0 when the text must take the slow path.
 */
static int
grid_parse_chars(const GridObject *grid, const unsigned char *chars, Py_ssize_t length, int64_t *steps)
{
    Py_ssize_t index = 0;
    uint64_t units = 0;
    int significant = 0;

    if (length > MAX_TEXT_LENGTH) {
        return 0;
    }
    /* whole part */
    for (; index < length; index++) {
        const unsigned digit = (unsigned)chars[index] - '0';
        if (digit > 9) {
            break;
        }
        if (units || digit) {
            if (++significant > MAX_DIGITS) {
                return 0;
            }
            units = units * 10 + digit;
        }
    }
    if (index == 0) {
        return 0; /* no leading digit: ".5", "-1", "" and the like */
    }
    int fraction = 0; /* fraction digits kept (at most the grid's scale) */
    if (index < length) {
        if (chars[index] != '.') {
            return 0;
        }
        index++;
        if (index == length) {
            return 0; /* "1." */
        }
        for (; index < length; index++) {
            const unsigned digit = (unsigned)chars[index] - '0';
            if (digit > 9) {
                return 0;
            }
            if (fraction < grid->scale) {
                fraction++;
                if (units || digit) {
                    if (++significant > MAX_DIGITS) {
                        return 0;
                    }
                    units = units * 10 + digit;
                }
            }
            else if (digit) {
                return 0; /* finer than the grid: off-grid, the slow path says so */
            }
        }
    }
    if (units && fraction < grid->scale) {
        const int missing = grid->scale - fraction;
        if (significant + missing > MAX_DIGITS) {
            return 0;
        }
        units *= (uint64_t)POWERS_OF_TEN[missing];
    }
    if (grid->step_units != 1) {
        if (units % (uint64_t)grid->step_units) {
            return 0;
        }
        units /= (uint64_t)grid->step_units;
    }
    if ((int64_t)units < grid->minimum) {
        return 0;
    }
    *steps = (int64_t)units;
    return 1;
}

/* 10**0 .. 10**22: every one is exact as a double */
static const double DOUBLE_POWERS_OF_TEN[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                                1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                                1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * A JSON number decoded as a float (Thalex sends those), without repr(): guess the steps,
 * then accept the guess only if its decimal value rounds to exactly this double. A decimal
 * of at most 15 significant digits is the only such decimal that short, so it is the value
 * repr() would print, and the exact string path would return the same steps. Everything
 * else (off-grid, negative, longer, non-finite) goes to the slow path.
 */
static int
grid_parse_float(const GridObject *grid, double value, int64_t *steps)
{
    if (!(value >= 0.0) || grid->scale > 22 || value > 1e15) {
        return 0;
    }
    const double scale = DOUBLE_POWERS_OF_TEN[grid->scale];
    const double guess = value * scale / (double)grid->step_units + 0.5; /* only a guess: checked below */
    if (guess * (double)grid->step_units >= 1e15) {
        return 0;
    }
    const int64_t candidate = (int64_t)guess;
    const int64_t units = candidate * grid->step_units;
    if (units >= 1000000000000000LL || (double)units / scale != value) {
        return 0;
    }
    if (candidate < grid->minimum) {
        return 0;
    }
    *steps = candidate;
    return 1;
}

static inline int
grid_parse_fast(const GridObject *grid, PyObject *text, int64_t *steps)
{
    if (PyFloat_CheckExact(text)) {
        return grid_parse_float(grid, PyFloat_AS_DOUBLE(text), steps);
    }
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_COMPACT_ASCII(text)) {
        return 0;
    }
    return grid_parse_chars(grid, (const unsigned char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text),
                            steps);
}

/* New reference to the steps of ``text`` (fast path or the slow callable), NULL on error. */
static PyObject *
grid_convert(GridObject *grid, PyObject *text)
{
    int64_t steps;
    if (grid_parse_fast(grid, text, &steps)) {
        return PyLong_FromLongLong(steps);
    }
    return PyObject_CallOneArg(grid->slow, text);
}

static int
Grid_init(GridObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"scale", "step_units", "minimum", "slow", NULL};
    int scale;
    long long step_units;
    long long minimum;
    PyObject *slow;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iLLO:Grid", keywords, &scale, &step_units, &minimum,
                                     &slow)) {
        return -1;
    }
    if (scale < 0) {
        PyErr_SetString(PyExc_ValueError, "scale must be >= 0");
        return -1;
    }
    if (step_units <= 0) {
        PyErr_SetString(PyExc_ValueError, "step_units must be positive");
        return -1;
    }
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return -1;
    }
    self->scale = scale;
    self->step_units = step_units;
    self->minimum = minimum;
    Py_XSETREF(self->slow, Py_NewRef(slow));
    return 0;
}

static PyObject *
Grid_call(GridObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *text;
    if (kwargs && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Grid() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Grid", 1, 1, &text)) {
        return NULL;
    }
    return grid_convert(self, text);
}

static int
Grid_traverse(GridObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slow);
    return 0;
}

static int
Grid_clear(GridObject *self)
{
    Py_CLEAR(self->slow);
    return 0;
}

/* Deallocation for every GC-tracked type here: untrack, drop references (tp_clear), free. */
static void
native_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_TYPE(self)->tp_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject GridType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hftkit._native.Grid",
    .tp_doc = PyDoc_STR("Grid(scale, step_units, minimum, slow): decimal text -> grid steps.\n\n"
                        "Plain unsigned decimals on the grid convert in C; anything else is\n"
                        "passed to ``slow(text)``, which converts or raises."),
    .tp_basicsize = sizeof(GridObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Grid_init,
    .tp_call = (ternaryfunc)Grid_call,
    .tp_traverse = (traverseproc)Grid_traverse,
    .tp_clear = (inquiry)Grid_clear,
    .tp_dealloc = native_dealloc,
};

/* A (price, size) tuple; steals both references, also on failure (NULL in = NULL out). */
static PyObject *
new_level(PyObject *price, PyObject *size)
{
    PyObject *level = (price == NULL || size == NULL) ? NULL : PyTuple_New(2);
    if (level == NULL) {
        Py_XDECREF(price);
        Py_XDECREF(size);
        return NULL;
    }
    PyTuple_SET_ITEM(level, 0, price);
    PyTuple_SET_ITEM(level, 1, size);
    return level;
}

/* Borrowed references to the first two items of a level of exactly ``columns`` items. */
static int
unpack_columns(PyObject *item, Py_ssize_t columns, PyObject **first, PyObject **second)
{
    if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == columns) {
        *first = PyTuple_GET_ITEM(item, 0);
        *second = PyTuple_GET_ITEM(item, 1);
        return 0;
    }
    if (PyList_CheckExact(item) && PyList_GET_SIZE(item) == columns) {
        *first = PyList_GET_ITEM(item, 0);
        *second = PyList_GET_ITEM(item, 1);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "a level must have %zd items (price, size, ...), got %.200R", columns, item);
    return -1;
}

/* Borrowed references to the two items of a (price, size) pair; 0 on success, -1 with an exception. */
static inline int
unpack_pair(PyObject *item, PyObject **first, PyObject **second)
{
    return unpack_columns(item, 2, first, second);
}

static PyObject *
convert_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "convert_levels(price_grid, size_grid, raw, columns=2)");
        return NULL;
    }
    const Py_ssize_t columns = nargs == 4 ? PyLong_AsSsize_t(args[3]) : 2;
    if (columns == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (columns < 2) {
        PyErr_SetString(PyExc_ValueError, "columns must be >= 2");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &GridType) || !PyObject_TypeCheck(args[1], &GridType)) {
        PyErr_SetString(PyExc_TypeError, "price_grid and size_grid must be Grid objects");
        return NULL;
    }
    GridObject *price_grid = (GridObject *)args[0];
    GridObject *size_grid = (GridObject *)args[1];
    PyObject *raw = PySequence_Fast(args[2], "levels must be a sequence");
    if (raw == NULL) {
        return NULL;
    }
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(raw);
    PyObject *result = PyList_New(count);
    if (result == NULL) {
        Py_DECREF(raw);
        return NULL;
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *price_text;
        PyObject *size_text;
        if (unpack_columns(PySequence_Fast_GET_ITEM(raw, index), columns, &price_text, &size_text) < 0) {
            goto error;
        }
        PyObject *price = grid_convert(price_grid, price_text);
        PyObject *level = price == NULL ? NULL : new_level(price, grid_convert(size_grid, size_text));
        if (level == NULL) {
            goto error;
        }
        PyList_SET_ITEM(result, index, level);
    }
    Py_DECREF(raw);
    return result;
error:
    Py_DECREF(raw);
    Py_DECREF(result); /* unfilled slots are NULL, which list dealloc skips */
    return NULL;
}

/* ------------------------------------------------------------------------------------- */
/* convert_raw_levels: JSON ``[["price","size"],...]`` bytes -> levels, no str objects       */

typedef struct {
    Py_ssize_t start; /* first byte inside the quotes */
    Py_ssize_t length;
} Span;

static inline Py_ssize_t
skip_space(const unsigned char *bytes, Py_ssize_t index, Py_ssize_t end)
{
    while (index < end && (bytes[index] == ' ' || bytes[index] == '\n' || bytes[index] == '\r' ||
                           bytes[index] == '\t')) {
        index++;
    }
    return index;
}

/* A JSON string of printable ASCII without escapes; returns the index after it, or -1. */
static inline Py_ssize_t
scan_plain_string(const unsigned char *bytes, Py_ssize_t index, Py_ssize_t end, Span *span)
{
    if (index >= end || bytes[index] != '"') {
        return -1;
    }
    const Py_ssize_t start = ++index;
    while (index < end && bytes[index] != '"') {
        const unsigned char byte = bytes[index];
        if (byte == '\\' || byte < 0x20 || byte >= 0x80) {
            return -1; /* escapes and non-ASCII: msgspec's decoder handles those */
        }
        index++;
    }
    if (index >= end) {
        return -1;
    }
    span->start = start;
    span->length = index - start;
    return index + 1;
}

/*
 * Validate the whole array first and record the string spans, so a structural problem
 * anywhere falls back to msgspec (which reports it) before any value is converted.
 * Returns the number of levels, or -1 when the text is not the plain expected shape.
 */
static Py_ssize_t
scan_levels(const unsigned char *bytes, Py_ssize_t end, Span **spans_out)
{
    Py_ssize_t index = skip_space(bytes, 0, end);
    if (index >= end || bytes[index] != '[') {
        return -1;
    }
    index = skip_space(bytes, index + 1, end);
    Py_ssize_t capacity = 64;
    Py_ssize_t count = 0;
    Span *spans = PyMem_Malloc((size_t)capacity * 2 * sizeof(Span));
    if (spans == NULL) {
        PyErr_NoMemory();
        return -2;
    }
    if (index < end && bytes[index] == ']') {
        index++;
        goto finish;
    }
    for (;;) {
        if (count == capacity) {
            capacity *= 2;
            Span *grown = PyMem_Realloc(spans, (size_t)capacity * 2 * sizeof(Span));
            if (grown == NULL) {
                PyMem_Free(spans);
                PyErr_NoMemory();
                return -2;
            }
            spans = grown;
        }
        if (index >= end || bytes[index] != '[') {
            goto reject;
        }
        index = skip_space(bytes, index + 1, end);
        index = scan_plain_string(bytes, index, end, &spans[2 * count]);
        if (index < 0) {
            goto reject;
        }
        index = skip_space(bytes, index, end);
        if (index >= end || bytes[index] != ',') {
            goto reject;
        }
        index = skip_space(bytes, index + 1, end);
        index = scan_plain_string(bytes, index, end, &spans[2 * count + 1]);
        if (index < 0) {
            goto reject;
        }
        index = skip_space(bytes, index, end);
        if (index >= end || bytes[index] != ']') {
            goto reject;
        }
        count++;
        index = skip_space(bytes, index + 1, end);
        if (index < end && bytes[index] == ',') {
            index = skip_space(bytes, index + 1, end);
            continue;
        }
        if (index < end && bytes[index] == ']') {
            index++;
            break;
        }
        goto reject;
    }
finish:
    if (skip_space(bytes, index, end) != end) {
        goto reject;
    }
    *spans_out = spans;
    return count;
reject:
    PyMem_Free(spans);
    return -1;
}

/* New reference to the steps of one string span. */
static PyObject *
grid_convert_span(GridObject *grid, const unsigned char *bytes, const Span *span)
{
    int64_t steps;
    if (grid_parse_chars(grid, bytes + span->start, span->length, &steps)) {
        return PyLong_FromLongLong(steps);
    }
    PyObject *text = PyUnicode_FromStringAndSize((const char *)bytes + span->start, span->length);
    if (text == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_CallOneArg(grid->slow, text);
    Py_DECREF(text);
    return result;
}

static PyObject *
convert_raw_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "convert_raw_levels(price_grid, size_grid, raw_json)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &GridType) || !PyObject_TypeCheck(args[1], &GridType)) {
        PyErr_SetString(PyExc_TypeError, "price_grid and size_grid must be Grid objects");
        return NULL;
    }
    GridObject *price_grid = (GridObject *)args[0];
    GridObject *size_grid = (GridObject *)args[1];
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *bytes = (const unsigned char *)view.buf;
    Span *spans = NULL;
    const Py_ssize_t count = scan_levels(bytes, view.len, &spans);
    if (count < 0) {
        PyBuffer_Release(&view);
        if (count == -2) {
            return NULL;
        }
        Py_RETURN_NONE; /* not the plain shape: the caller decodes it with msgspec */
    }
    PyObject *result = PyList_New(count);
    if (result == NULL) {
        goto error;
    }
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *price = grid_convert_span(price_grid, bytes, &spans[2 * index]);
        PyObject *level =
            price == NULL ? NULL : new_level(price, grid_convert_span(size_grid, bytes, &spans[2 * index + 1]));
        if (level == NULL) {
            goto error;
        }
        PyList_SET_ITEM(result, index, level);
    }
    PyMem_Free(spans);
    PyBuffer_Release(&view);
    return result;
error:
    PyMem_Free(spans);
    PyBuffer_Release(&view);
    Py_XDECREF(result);
    return NULL;
}

/* ------------------------------------------------------------------------------------- */
/* Book side: apply absolute level sizes to a dict + sorted window (see order_book.py)    */
/* ------------------------------------------------------------------------------------- */

/* A window key: the price (bids) or its negation (asks), as an int64 when it fits. */
typedef struct {
    PyObject *object; /* owned; created on demand when not fast */
    long long value;
    int fast;
} Key;

static inline int
as_int64(PyObject *object, long long *value)
{
    if (!PyLong_CheckExact(object)) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    /* Up to 3.11 an int is a sign-and-length plus 30-bit digits; prices and sizes in
       ticks and lots have one or two, read here without the general conversion's loop. */
    const digit *digits = ((PyLongObject *)object)->ob_digit;
    switch (Py_SIZE(object)) {
    case 0:
        *value = 0;
        return 1;
    case 1:
        *value = (long long)digits[0];
        return 1;
    case -1:
        *value = -(long long)digits[0];
        return 1;
    case 2:
        *value = (long long)(((uint64_t)digits[1] << PyLong_SHIFT) | digits[0]);
        return 1;
    case -2:
        *value = -(long long)(((uint64_t)digits[1] << PyLong_SHIFT) | digits[0]);
        return 1;
    default:
        break;
    }
#endif
    int overflow;
    *value = PyLong_AsLongLongAndOverflow(object, &overflow);
    if (overflow || (*value == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The key as an object (new reference kept in key->object). */
static PyObject *
key_object(Key *key, PyObject *price, int negate)
{
    if (key->object == NULL) {
        key->object = negate ? PyNumber_Negative(price) : Py_NewRef(price);
    }
    return key->object;
}

static int
key_init(Key *key, PyObject *price, int negate)
{
    long long value;
    key->object = NULL;
    key->fast = 0;
    if (as_int64(price, &value) && value != LLONG_MIN) {
        key->value = negate ? -value : value;
        key->fast = 1;
        return 0;
    }
    return key_object(key, price, negate) == NULL ? -1 : 0;
}

/* 1 if item < key, 0 if not, -1 on error. */
static int
item_less_than_key(PyObject *item, Key *key, PyObject *price, int negate)
{
    long long value;
    if (key->fast && as_int64(item, &value)) {
        return value < key->value;
    }
    PyObject *object = key_object(key, price, negate);
    return object == NULL ? -1 : PyObject_RichCompareBool(item, object, Py_LT);
}

/* 1 if key < item, 0 if not, -1 on error. */
static int
key_less_than_item(Key *key, PyObject *item, PyObject *price, int negate)
{
    long long value;
    if (key->fast && as_int64(item, &value)) {
        return key->value < value;
    }
    PyObject *object = key_object(key, price, negate);
    return object == NULL ? -1 : PyObject_RichCompareBool(object, item, Py_LT);
}

/* bisect.bisect_left / bisect_right over a list of ints; -1 on error. */
static Py_ssize_t
bisect(PyObject *window, Key *key, PyObject *price, int negate, int right)
{
    Py_ssize_t low = 0;
    Py_ssize_t high = PyList_GET_SIZE(window);
    while (low < high) {
        const Py_ssize_t middle = ((size_t)low + (size_t)high) / 2;
        PyObject *item = PyList_GET_ITEM(window, middle);
        int go_right;
        if (right) {
            const int less = key_less_than_item(key, item, price, negate);
            if (less < 0) {
                return -1;
            }
            go_right = !less;
        }
        else {
            go_right = item_less_than_key(item, key, price, negate);
            if (go_right < 0) {
                return -1;
            }
        }
        if (go_right) {
            low = middle + 1;
        }
        else {
            high = middle;
        }
    }
    return low;
}

/* Edge of the window: every key >= edge is in it. */
typedef struct {
    PyObject *object;
    long long value;
    int kind; /* 0: compare value; -1: below every int64 key; +1: above every int64 key; 2: generic */
} Edge;

static int
edge_init(Edge *edge, PyObject *object)
{
    edge->object = object;
    edge->value = 0;
    edge->kind = 2;
    if (PyLong_CheckExact(object)) {
        int overflow;
        edge->value = PyLong_AsLongLongAndOverflow(object, &overflow);
        if (edge->value == -1 && PyErr_Occurred()) {
            return -1;
        }
        edge->kind = overflow;
    }
    return 0;
}

/* 1 if key < edge (the level lies outside the window), 0 if not, -1 on error. */
static int
below_edge(Key *key, Edge *edge, PyObject *price, int negate)
{
    if (key->fast && edge->kind != 2) {
        if (edge->kind == 0) {
            return key->value < edge->value;
        }
        return edge->kind > 0;
    }
    PyObject *object = key_object(key, price, negate);
    return object == NULL ? -1 : PyObject_RichCompareBool(object, edge->object, Py_LT);
}

/* dict.pop(price, None) is not None, in one hash lookup: 1 if removed, 0 if absent, -1 on error. */
static int
dict_discard(PyObject *sizes, PyObject *price)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *removed;
    const int found = PyDict_Pop(sizes, price, &removed);
    if (found <= 0) {
        return found;
    }
#else
    PyObject *removed = _PyDict_Pop(sizes, price, Py_None);
    if (removed == NULL) {
        return -1;
    }
#endif
    const int was_set = removed != Py_None;
    Py_DECREF(removed);
    return was_set;
}

static int
apply_level(PyObject *sizes, PyObject *window, Edge *edge, PyObject *price, PyObject *size, int negate)
{
    Key key;
    int status = -1;
    if (key_init(&key, price, negate) < 0) {
        return -1;
    }
    const int nonzero = PyObject_IsTrue(size);
    if (nonzero < 0) {
        goto done;
    }
    const int below = below_edge(&key, edge, price, negate);
    if (below < 0) {
        goto done;
    }
    if (below) {
        status = nonzero ? PyDict_SetItem(sizes, price, size) : (dict_discard(sizes, price) < 0 ? -1 : 0);
        goto done;
    }
    if (nonzero) {
        /* one lookup for a new level: setdefault inserts it (the dict grows) or finds it */
        const Py_ssize_t before = PyDict_GET_SIZE(sizes);
        if (PyDict_SetDefault(sizes, price, size) == NULL) {
            goto done;
        }
        if (PyDict_GET_SIZE(sizes) == before) {
            status = PyDict_SetItem(sizes, price, size);
            goto done;
        }
        const Py_ssize_t at = bisect(window, &key, price, negate, 1);
        PyObject *object = at < 0 ? NULL : key_object(&key, price, negate);
        if (object == NULL || PyList_Insert(window, at, object) < 0) {
            goto done;
        }
        status = 0;
        goto done;
    }
    const int removed = dict_discard(sizes, price);
    if (removed <= 0) {
        status = removed;
        goto done;
    }
    const Py_ssize_t at = bisect(window, &key, price, negate, 0);
    if (at < 0) {
        goto done;
    }
    if (at >= PyList_GET_SIZE(window)) {
        PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        goto done;
    }
    status = PyList_SetSlice(window, at, at + 1, NULL);
done:
    Py_XDECREF(key.object);
    return status;
}

static PyObject *
apply_side(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_side(sizes, window, edge, levels, negate, window_min, window_max)");
        return NULL;
    }
    PyObject *sizes = args[0];
    PyObject *window = args[1];
    if (!PyDict_CheckExact(sizes) || !PyList_CheckExact(window)) {
        PyErr_SetString(PyExc_TypeError, "sizes must be a dict and window a list");
        return NULL;
    }
    Edge edge;
    if (edge_init(&edge, args[2]) < 0) {
        return NULL;
    }
    const int negate = PyObject_IsTrue(args[4]);
    if (negate < 0) {
        return NULL;
    }
    const Py_ssize_t window_min = PyLong_AsSsize_t(args[5]);
    const Py_ssize_t window_max = PyLong_AsSsize_t(args[6]);
    if ((window_min == -1 || window_max == -1) && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *levels = PySequence_Fast(args[3], "levels must be a sequence");
    if (levels == NULL) {
        return NULL;
    }
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(levels);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *price;
        PyObject *size;
        if (unpack_pair(PySequence_Fast_GET_ITEM(levels, index), &price, &size) < 0 ||
            apply_level(sizes, window, &edge, price, size, negate) < 0) {
            Py_DECREF(levels);
            return NULL;
        }
    }
    Py_DECREF(levels);
    const Py_ssize_t length = PyList_GET_SIZE(window);
    if ((length < window_min && PyDict_GET_SIZE(sizes) > length) || length > window_max) {
        Py_RETURN_FALSE; /* the caller refills or trims the window */
    }
    if (length == 0) {
        Py_RETURN_NONE;
    }
    PyObject *best_key = PyList_GET_ITEM(window, length - 1);
    PyObject *best = negate ? PyNumber_Negative(best_key) : Py_NewRef(best_key);
    if (best == NULL) {
        return NULL;
    }
    PyObject *best_size = PyDict_GetItemWithError(sizes, best);
    if (best_size == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, best);
        }
        Py_DECREF(best);
        return NULL;
    }
    return new_level(best, Py_NewRef(best_size));
}

/* ------------------------------------------------------------------------------------- */
/* top_keys: the window refill (the ``count`` best keys of a side, ascending)              */

typedef struct {
    long long value; /* the key: price, or -price for asks */
    PyObject *price; /* borrowed from the dict */
} Entry;

static void
sift_down(Entry *heap, Py_ssize_t length, Py_ssize_t at)
{
    for (;;) {
        Py_ssize_t smallest = at;
        const Py_ssize_t left = 2 * at + 1;
        const Py_ssize_t right = left + 1;
        if (left < length && heap[left].value < heap[smallest].value) {
            smallest = left;
        }
        if (right < length && heap[right].value < heap[smallest].value) {
            smallest = right;
        }
        if (smallest == at) {
            return;
        }
        const Entry swap = heap[at];
        heap[at] = heap[smallest];
        heap[smallest] = swap;
        at = smallest;
    }
}

static void
sift_up(Entry *heap, Py_ssize_t at)
{
    while (at > 0) {
        const Py_ssize_t parent = (at - 1) / 2;
        if (heap[parent].value <= heap[at].value) {
            return;
        }
        const Entry swap = heap[at];
        heap[at] = heap[parent];
        heap[parent] = swap;
        at = parent;
    }
}

static int
compare_entries(const void *left, const void *right)
{
    const long long a = ((const Entry *)left)->value;
    const long long b = ((const Entry *)right)->value;
    return (a > b) - (a < b);
}

static PyObject *
top_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "top_keys(sizes, count, negate)");
        return NULL;
    }
    PyObject *sizes = args[0];
    if (!PyDict_CheckExact(sizes)) {
        PyErr_SetString(PyExc_TypeError, "sizes must be a dict");
        return NULL;
    }
    const Py_ssize_t count = PyLong_AsSsize_t(args[1]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const int negate = PyObject_IsTrue(args[2]);
    if (negate < 0) {
        return NULL;
    }
    const Py_ssize_t capacity = count < PyDict_GET_SIZE(sizes) ? count : PyDict_GET_SIZE(sizes);
    if (capacity <= 0) {
        return PyList_New(0);
    }
    Entry *heap = PyMem_Malloc((size_t)capacity * sizeof(Entry));
    if (heap == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t length = 0;
    Py_ssize_t position = 0;
    PyObject *price;
    PyObject *size;
    while (PyDict_Next(sizes, &position, &price, &size)) {
        long long value;
        if (!as_int64(price, &value) || value == LLONG_MIN) {
            PyMem_Free(heap);
            Py_RETURN_NONE; /* not all int64: the caller's pure path handles any ints */
        }
        const Entry entry = {negate ? -value : value, price};
        if (length < capacity) {
            heap[length] = entry;
            sift_up(heap, length++);
        }
        else if (entry.value > heap[0].value) {
            heap[0] = entry;
            sift_down(heap, length, 0);
        }
    }
    qsort(heap, (size_t)length, sizeof(Entry), compare_entries);
    PyObject *result = PyList_New(length);
    if (result == NULL) {
        PyMem_Free(heap);
        return NULL;
    }
    for (Py_ssize_t index = 0; index < length; index++) {
        PyObject *key = negate ? PyLong_FromLongLong(heap[index].value) : Py_NewRef(heap[index].price);
        if (key == NULL) {
            PyMem_Free(heap);
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, index, key);
    }
    PyMem_Free(heap);
    return result;
}

/* ------------------------------------------------------------------------------------- */
/* Credits: the token bucket's balance in exact int64 credits (see token_bucket.py)         */

typedef struct {
    PyObject_HEAD
    long long credits;     /* may go negative while async waiters hold reservations */
    long long last_ns;
    long long max_credits; /* capacity * unit */
    long long rate;        /* credits added per nanosecond */
    long long unit;        /* credits per token */
    long long capacity;
    long long rejected;
    PyObject *now;   /* callable() -> monotonic ns */
    PyObject *check; /* callable(n): raises for a count that can never be admitted */
    PyObject *big;   /* the balance as a Python int while it lies below int64 (else NULL) */
} CreditsObject;

/* Store an exact balance: int64 when it fits, else a Python int (queued reservations can
   drive it that far below zero on a bucket whose capacity is near int64). Steals ``value``. */
static int
credits_store(CreditsObject *self, PyObject *value)
{
    int overflow;
    const long long credits = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (credits == -1 && PyErr_Occurred()) {
        Py_DECREF(value);
        return -1;
    }
    if (overflow) {
        Py_XSETREF(self->big, value);
        return 0;
    }
    Py_CLEAR(self->big);
    Py_DECREF(value);
    self->credits = credits;
    return 0;
}

/* The refill in Python ints: the balance is below int64 or would leave it. */
static int
credits_refill_big(CreditsObject *self, long long elapsed)
{
    PyObject *current = self->big ? Py_NewRef(self->big) : PyLong_FromLongLong(self->credits);
    PyObject *elapsed_object = PyLong_FromLongLong(elapsed);
    PyObject *rate = PyLong_FromLongLong(self->rate);
    PyObject *maximum = PyLong_FromLongLong(self->max_credits);
    PyObject *added = NULL;
    PyObject *total = NULL;
    int status = -1;
    if (current == NULL || elapsed_object == NULL || rate == NULL || maximum == NULL) {
        goto done;
    }
    added = PyNumber_Multiply(elapsed_object, rate);
    total = added == NULL ? NULL : PyNumber_Add(current, added);
    if (total == NULL) {
        goto done;
    }
    const int above = PyObject_RichCompareBool(total, maximum, Py_GT);
    if (above < 0) {
        goto done;
    }
    status = credits_store(self, above ? Py_NewRef(maximum) : Py_NewRef(total));
done:
    Py_XDECREF(current);
    Py_XDECREF(elapsed_object);
    Py_XDECREF(rate);
    Py_XDECREF(maximum);
    Py_XDECREF(added);
    Py_XDECREF(total);
    return status;
}

/* Bring the balance up to date; 0 on success, -1 with an exception. */
static int
credits_refill(CreditsObject *self)
{
    PyObject *now_object = PyObject_CallNoArgs(self->now);
    if (now_object == NULL) {
        return -1;
    }
    const long long now = PyLong_AsLongLong(now_object);
    Py_DECREF(now_object);
    if (now == -1 && PyErr_Occurred()) {
        return -1;
    }
    const long long elapsed = now - self->last_ns;
    self->last_ns = now;
    if (self->big != NULL) {
        return credits_refill_big(self, elapsed);
    }
    if (elapsed >= 0) {
        if (self->credits >= self->max_credits) {
            self->credits = self->max_credits;
            return 0;
        }
        /* credits + elapsed * rate, capped at max_credits; room < 2**64 even when reservations
           have driven the balance far below zero, so the unsigned arithmetic is exact */
        const unsigned long long room = (unsigned long long)self->max_credits - (unsigned long long)self->credits;
        const unsigned long long rate = (unsigned long long)self->rate;
        if ((unsigned long long)elapsed >= (room - 1) / rate + 1) {
            self->credits = self->max_credits;
        }
        else {
            self->credits = (long long)((unsigned long long)self->credits + (unsigned long long)elapsed * rate);
        }
        return 0;
    }
    /* a clock that stepped back (a simulated one can): the balance drops, as in Python */
    const unsigned long long back = (unsigned long long)(-(elapsed + 1)) + 1;
    const unsigned long long above_floor = (unsigned long long)self->credits - (unsigned long long)LLONG_MIN;
    if (back > above_floor / (unsigned long long)self->rate) {
        return credits_refill_big(self, elapsed);
    }
    self->credits = (long long)((unsigned long long)self->credits - back * (unsigned long long)self->rate);
    return 0;
}

static PyObject *
Credits_take(CreditsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long count = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "take(n=1)");
        return NULL;
    }
    if (credits_refill(self) < 0) {
        return NULL;
    }
    if (nargs == 1) {
        int overflow = 0;
        count = PyLong_CheckExact(args[0]) ? PyLong_AsLongLongAndOverflow(args[0], &overflow) : 0;
        if (count == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow || count < 1 || count > self->capacity) {
            /* not a count this bucket can ever admit: the Python check raises the right error */
            PyObject *raised = PyObject_CallOneArg(self->check, args[0]);
            if (raised == NULL) {
                return NULL;
            }
            Py_DECREF(raised);
            self->rejected++;
            Py_RETURN_FALSE;
        }
    }
    const long long need = count * self->unit; /* <= max_credits: no overflow */
    if (self->big == NULL && need <= self->credits) {
        self->credits -= need;
        Py_RETURN_TRUE;
    }
    self->rejected++;
    Py_RETURN_FALSE;
}

static PyObject *
Credits_refill(CreditsObject *self, PyObject *unused)
{
    if (credits_refill(self) < 0) {
        return NULL;
    }
    return self->big ? Py_NewRef(self->big) : PyLong_FromLongLong(self->credits);
}

static int
Credits_init(CreditsObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"credits", "max_credits", "rate", "unit", "capacity", "now", "check", NULL};
    PyObject *now;
    PyObject *check;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLLLLOO:Credits", keywords, &self->credits,
                                     &self->max_credits, &self->rate, &self->unit, &self->capacity, &now,
                                     &check)) {
        return -1;
    }
    if (self->rate <= 0 || self->unit <= 0 || self->capacity <= 0 || self->max_credits <= 0 ||
        self->credits > self->max_credits || self->max_credits / self->unit < self->capacity) {
        PyErr_SetString(PyExc_ValueError, "inconsistent token bucket parameters");
        return -1;
    }
    if (!PyCallable_Check(now) || !PyCallable_Check(check)) {
        PyErr_SetString(PyExc_TypeError, "now and check must be callable");
        return -1;
    }
    Py_XSETREF(self->now, Py_NewRef(now));
    Py_XSETREF(self->check, Py_NewRef(check));
    PyObject *start = PyObject_CallNoArgs(now);
    if (start == NULL) {
        return -1;
    }
    self->last_ns = PyLong_AsLongLong(start);
    Py_DECREF(start);
    self->rejected = 0;
    Py_CLEAR(self->big);
    return (self->last_ns == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
Credits_get_credits(CreditsObject *self, void *closure)
{
    return self->big ? Py_NewRef(self->big) : PyLong_FromLongLong(self->credits);
}

static int
Credits_set_credits(CreditsObject *self, PyObject *value, void *closure)
{
    if (value == NULL || !PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "credits must be an int");
        return -1;
    }
    return credits_store(self, Py_NewRef(value));
}

static PyObject *
Credits_get_rejected(CreditsObject *self, void *closure)
{
    return PyLong_FromLongLong(self->rejected);
}

static int
Credits_traverse(CreditsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->now);
    Py_VISIT(self->check);
    Py_VISIT(self->big);
    return 0;
}

static int
Credits_clear(CreditsObject *self)
{
    Py_CLEAR(self->now);
    Py_CLEAR(self->check);
    Py_CLEAR(self->big);
    return 0;
}

static PyMethodDef Credits_methods[] = {
    {"take", (PyCFunction)(void (*)(void))Credits_take, METH_FASTCALL,
     PyDoc_STR("take(n=1) -> bool: refill, then take n tokens if they are there")},
    {"refill", (PyCFunction)Credits_refill, METH_NOARGS, PyDoc_STR("refill() -> credits now")},
    {NULL, NULL, 0, NULL},
};

static PyObject *
Credits_get_last_ns(CreditsObject *self, void *closure)
{
    return PyLong_FromLongLong(self->last_ns);
}

static PyObject *
Credits_get_now(CreditsObject *self, void *closure)
{
    return Py_NewRef(self->now);
}

static PyGetSetDef Credits_getset[] = {
    {"last_ns", (getter)Credits_get_last_ns, NULL, "clock reading of the last refill", NULL},
    {"now", (getter)Credits_get_now, NULL, "the clock", NULL},
    {"credits", (getter)Credits_get_credits, (setter)Credits_set_credits, "the balance in credits", NULL},
    {"rejected", (getter)Credits_get_rejected, NULL, "refused take() calls", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CreditsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hftkit._native.Credits",
    .tp_doc = PyDoc_STR("Credits(credits, max_credits, rate, unit, capacity, now, check): a token\n"
                        "bucket's exact balance (int64, or a Python int while far below zero)."),
    .tp_basicsize = sizeof(CreditsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Credits_init,
    .tp_traverse = (traverseproc)Credits_traverse,
    .tp_clear = (inquiry)Credits_clear,
    .tp_dealloc = native_dealloc,
    .tp_methods = Credits_methods,
    .tp_getset = Credits_getset,
};

/* ------------------------------------------------------------------------------------- */
/* The simulator's replayed depth (hftkit.sim.engine.liquidity / book): every level of every
 * recorded diff sets a background size in the matching engine's book, and every changed level
 * goes out in the batch's update. ``set_background`` takes the easy levels of
 * ``BackgroundLiquidity._set_side`` (plain int pairs, background only: no order of ours queued
 * there, and not crossing the other side) and stops at the first level it does not take,
 * returning its index, before changing anything for it: the Python loop, the reference, runs
 * that one level and calls again after it. ``changed_sizes`` is ``_flush``'s per-side loop. */

static PyObject *NAME_BACKGROUND;
static PyObject *NAME_TAIL;
static PyObject *NAME_QUEUE;
static PyObject *NAME_OWN;

/* 1 with *value set, 0 when the attribute is not an int64 (the caller leaves it to Python), -1 on error. */
static int
int64_attribute(PyObject *object, PyObject *name, long long *value)
{
    PyObject *attribute = PyObject_GetAttr(object, name);
    if (attribute == NULL) {
        return -1;
    }
    const int fast = as_int64(attribute, value);
    Py_DECREF(attribute);
    return fast;
}

static int
set_int64_attribute(PyObject *object, PyObject *name, long long value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL) {
        return -1;
    }
    const int status = PyObject_SetAttr(object, name, number);
    Py_DECREF(number);
    return status;
}

/* Whether a level at ``price`` on the bid (``is_bid``) or ask side reaches the other side's best
 * (keys best last: bids by price, asks by -price): 1 yes, 0 no, -1 when a key is not an int64. */
static int
crosses_opposite(PyObject *opposite_keys, long long price, int is_bid)
{
    const Py_ssize_t length = PyList_GET_SIZE(opposite_keys);
    if (length == 0) {
        return 0;
    }
    long long best;
    if (!as_int64(PyList_GET_ITEM(opposite_keys, length - 1), &best) || best == LLONG_MIN) {
        return -1;
    }
    return is_bid ? -best <= price : best >= price;
}

/* keys.insert(bisect_right(keys, key), key) with key = price or -price. */
static int
insert_key(PyObject *keys, PyObject *price, int negate)
{
    Key key;
    int status = -1;
    if (key_init(&key, price, negate) < 0) {
        return -1;
    }
    const Py_ssize_t at = bisect(keys, &key, price, negate, 1);
    PyObject *object = at < 0 ? NULL : key_object(&key, price, negate);
    if (object != NULL) {
        status = PyList_Insert(keys, at, object);
    }
    Py_XDECREF(key.object);
    return status;
}

/* BookSide.remove's key part: pop the best, else delete at bisect_left. */
static int
remove_key(PyObject *keys, PyObject *price, int negate)
{
    Key key;
    int status = -1;
    if (key_init(&key, price, negate) < 0) {
        return -1;
    }
    const Py_ssize_t length = PyList_GET_SIZE(keys);
    Py_ssize_t at = length - 1;
    long long last;
    if (length == 0 || !key.fast || !as_int64(PyList_GET_ITEM(keys, at), &last) || last != key.value) {
        at = bisect(keys, &key, price, negate, 0);
    }
    if (at >= 0) {
        if (at >= length) {
            PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
        }
        else {
            status = PyList_SetSlice(keys, at, at + 1, NULL);
        }
    }
    Py_XDECREF(key.object);
    return status;
}

/* 1 when the level was set here, 0 when it is left to Python, -1 on error. */
static int
set_background_level(PyObject *by_price, PyObject *keys, PyObject *changed, PyObject *opposite_keys,
                     PyObject *level_type, PyObject *empty_queue, int is_bid, PyObject *price, PyObject *size)
{
    long long price_value, size_value;
    if (!as_int64(price, &price_value) || !as_int64(size, &size_value) || price_value <= 0 || size_value < 0) {
        return 0; /* Python refuses it with the classified error */
    }
    const int negate = !is_bid;
    PyObject *level = PyDict_GetItemWithError(by_price, price);
    if (level == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
        if (size_value == 0) {
            return 1;
        }
        const int crossing = crosses_opposite(opposite_keys, price_value, is_bid);
        if (crossing != 0) {
            return 0;
        }
        PyObject *created = PyObject_CallOneArg(level_type, price);
        if (created == NULL) {
            return -1;
        }
        int status = (PyObject_SetAttr(created, NAME_BACKGROUND, size) < 0 ||
                      PyObject_SetAttr(created, NAME_TAIL, size) < 0 ||
                      PyDict_SetItem(by_price, price, created) < 0)
                         ? -1
                         : 0;
        Py_DECREF(created);
        if (status < 0 || insert_key(keys, price, negate) < 0 || PySet_Add(changed, price) < 0) {
            return -1;
        }
        return 1;
    }
    Py_INCREF(level);
    int result = -1;
    long long old, tail;
    int fast = int64_attribute(level, NAME_BACKGROUND, &old);
    if (fast <= 0) {
        result = fast;
        goto done;
    }
    if (size_value == old) {
        result = 1;
        goto done;
    }
    PyObject *queue = PyObject_GetAttr(level, NAME_QUEUE);
    if (queue == NULL) {
        goto done;
    }
    const Py_ssize_t queued = queue == empty_queue ? 0 : PyObject_Length(queue);
    Py_DECREF(queue);
    if (queued != 0) {
        result = queued < 0 ? -1 : 0; /* our orders there: the queue rules are Python's */
        goto done;
    }
    if (size_value) {
        const int crossing = crosses_opposite(opposite_keys, price_value, is_bid);
        if (crossing != 0) {
            result = 0;
            goto done;
        }
    }
    fast = int64_attribute(level, NAME_TAIL, &tail);
    if (fast <= 0) {
        result = fast;
        goto done;
    }
    if (size_value > old) {
        if (__builtin_add_overflow(tail, size_value - old, &tail)) {
            result = 0;
            goto done;
        }
    }
    else {
        /* shrinking is taken from the back; with no order queued the tail is all there is */
        tail = tail >= old - size_value ? tail - (old - size_value) : 0;
    }
    if (set_int64_attribute(level, NAME_TAIL, tail) < 0 || PyObject_SetAttr(level, NAME_BACKGROUND, size) < 0) {
        goto done;
    }
    if (size_value == 0 && (PyDict_DelItem(by_price, price) < 0 || remove_key(keys, price, negate) < 0)) {
        goto done;
    }
    result = PySet_Add(changed, price) < 0 ? -1 : 1;
done:
    Py_DECREF(level);
    return result;
}

static PyObject *
set_background(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "set_background(by_price, keys, changed, levels, start, is_bid, "
                                         "opposite_keys, level_type, empty_queue)");
        return NULL;
    }
    PyObject *by_price = args[0];
    PyObject *keys = args[1];
    PyObject *changed = args[2];
    PyObject *opposite_keys = args[6];
    if (!PyDict_CheckExact(by_price) || !PyList_CheckExact(keys) || !PySet_CheckExact(changed) ||
        !PyList_CheckExact(opposite_keys)) {
        PyErr_SetString(PyExc_TypeError, "by_price must be a dict, keys and opposite_keys lists, changed a set");
        return NULL;
    }
    const Py_ssize_t start = PyLong_AsSsize_t(args[4]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const int is_bid = PyObject_IsTrue(args[5]);
    if (is_bid < 0) {
        return NULL;
    }
    PyObject *levels = PySequence_Fast(args[3], "levels must be a sequence");
    if (levels == NULL) {
        return NULL;
    }
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(levels);
    Py_ssize_t index = start < 0 ? 0 : start;
    for (; index < count; index++) {
        PyObject *item = PySequence_Fast_GET_ITEM(levels, index);
        PyObject *price;
        PyObject *size;
        if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2) {
            price = PyTuple_GET_ITEM(item, 0);
            size = PyTuple_GET_ITEM(item, 1);
        }
        else if (PyList_CheckExact(item) && PyList_GET_SIZE(item) == 2) {
            price = PyList_GET_ITEM(item, 0);
            size = PyList_GET_ITEM(item, 1);
        }
        else {
            break; /* Python unpacks it, or raises */
        }
        Py_INCREF(item); /* a list level's items stay alive while the level is set */
        const int status = set_background_level(by_price, keys, changed, opposite_keys, args[7], args[8], is_bid,
                                                price, size);
        Py_DECREF(item);
        if (status < 0) {
            Py_DECREF(levels);
            return NULL;
        }
        if (status == 0) {
            break;
        }
    }
    Py_DECREF(levels);
    return PyLong_FromSsize_t(index);
}

static PyObject *
changed_sizes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "changed_sizes(changed, by_price, descending)");
        return NULL;
    }
    PyObject *by_price = args[1];
    if (!PyDict_CheckExact(by_price)) {
        PyErr_SetString(PyExc_TypeError, "by_price must be a dict");
        return NULL;
    }
    const int descending = PyObject_IsTrue(args[2]);
    if (descending < 0) {
        return NULL;
    }
    PyObject *prices = PySequence_List(args[0]);
    if (prices == NULL || PyList_Sort(prices) < 0 || (descending && PyList_Reverse(prices) < 0)) {
        Py_XDECREF(prices);
        return NULL;
    }
    const Py_ssize_t count = PyList_GET_SIZE(prices);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *price = PyList_GET_ITEM(prices, index);
        PyObject *level = PyDict_GetItemWithError(by_price, price);
        PyObject *size;
        if (level == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(prices);
                return NULL;
            }
            size = PyLong_FromLong(0);
        }
        else {
            Py_INCREF(level);
            PyObject *background = PyObject_GetAttr(level, NAME_BACKGROUND);
            PyObject *own = background == NULL ? NULL : PyObject_GetAttr(level, NAME_OWN);
            size = own == NULL ? NULL : PyNumber_Add(background, own);
            Py_XDECREF(background);
            Py_XDECREF(own);
            Py_DECREF(level);
        }
        PyObject *pair = size == NULL ? NULL : new_level(Py_NewRef(price), size);
        if (pair == NULL) {
            Py_DECREF(prices);
            return NULL;
        }
        PyList_SET_ITEM(prices, index, pair); /* the list's reference to price moves into the pair */
        Py_DECREF(price);
    }
    return prices;
}

/* ------------------------------------------------------------------------------------- */
/* LatencyHistogram.record (hftkit.metrics.histogram): the log-linear bucket, the exact total,
 * minimum and maximum, over the histogram's own lists. Every stage of tick-to-trade records one
 * or more durations, a dozen per order: in C a record is one call with no Python frame. A value
 * this does not take (not an exact int (a bool is not), out of range, counts beyond int64) goes
 * to ``slow``, the
 * pure-Python record, which handles it exactly as the twin does; nothing is changed before
 * that decision, so no value is counted twice. */

#define HISTOGRAM_SUB_BUCKET_BITS 7
#define HISTOGRAM_LINEAR_BITS (HISTOGRAM_SUB_BUCKET_BITS + 1)
#define HISTOGRAM_HIGHEST_NS 60000000000LL

static PyObject *
histogram_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "histogram_record(counts, extremes, slow, value)");
        return NULL;
    }
    PyObject *counts = args[0];
    PyObject *extremes = args[1];
    PyObject *value_object = args[3];
    long long value;
    if (!PyList_CheckExact(counts) || !PyList_CheckExact(extremes) || PyList_GET_SIZE(extremes) != 3 ||
        !as_int64(value_object, &value) || value <= 0 || value > HISTOGRAM_HIGHEST_NS) {
        return PyObject_CallOneArg(args[2], value_object);
    }
    const int bits = 64 - __builtin_clzll((unsigned long long)value);
    const int shift = bits - HISTOGRAM_LINEAR_BITS;
    const Py_ssize_t index =
        shift > 0 ? ((Py_ssize_t)shift << HISTOGRAM_SUB_BUCKET_BITS) + (Py_ssize_t)(value >> shift)
                  : (Py_ssize_t)value;
    long long count, total, maximum, minimum;
    if (index >= PyList_GET_SIZE(counts) || !as_int64(PyList_GET_ITEM(counts, index), &count) ||
        count == LLONG_MAX || !as_int64(PyList_GET_ITEM(extremes, 0), &total) ||
        total > LLONG_MAX - value || !as_int64(PyList_GET_ITEM(extremes, 2), &maximum)) {
        return PyObject_CallOneArg(args[2], value_object);
    }
    /* the empty minimum is far above any int64 (1 << 126): read as "no minimum yet" */
    if (!as_int64(PyList_GET_ITEM(extremes, 1), &minimum)) {
        minimum = LLONG_MAX;
    }
    PyObject *new_count = PyLong_FromLongLong(count + 1);
    PyObject *new_total = PyLong_FromLongLong(total + value);
    if (new_count == NULL || new_total == NULL) {
        Py_XDECREF(new_count);
        Py_XDECREF(new_total);
        return NULL;
    }
    PyObject *old = PyList_GET_ITEM(counts, index);
    PyList_SET_ITEM(counts, index, new_count);
    Py_DECREF(old);
    old = PyList_GET_ITEM(extremes, 0);
    PyList_SET_ITEM(extremes, 0, new_total);
    Py_DECREF(old);
    if (value < minimum) {
        old = PyList_GET_ITEM(extremes, 1);
        PyList_SET_ITEM(extremes, 1, Py_NewRef(value_object));
        Py_DECREF(old);
    }
    if (value > maximum) {
        old = PyList_GET_ITEM(extremes, 2);
        PyList_SET_ITEM(extremes, 2, Py_NewRef(value_object));
        Py_DECREF(old);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------- */

static PyMethodDef native_methods[] = {
    {"convert_levels", (PyCFunction)(void (*)(void))convert_levels, METH_FASTCALL,
     PyDoc_STR("convert_levels(price_grid, size_grid, raw, columns=2) -> list[(price_steps, size_steps)]\n"
               "from the first two of each level's ``columns`` items (str or float)")},
    {"convert_raw_levels", (PyCFunction)(void (*)(void))convert_raw_levels, METH_FASTCALL,
     PyDoc_STR("convert_raw_levels(price_grid, size_grid, raw_json) -> levels, or None when the JSON\n"
               "is not a plain array of [\"price\", \"size\"] string pairs (decode it with msgspec)")},
    {"apply_side", (PyCFunction)(void (*)(void))apply_side, METH_FASTCALL,
     PyDoc_STR("apply_side(sizes, window, edge, levels, negate, window_min, window_max)\n"
               "-> best level, None (empty side) or False (the window needs a refill or trim)")},
    {"histogram_record", (PyCFunction)(void (*)(void))histogram_record, METH_FASTCALL,
     PyDoc_STR("histogram_record(counts, extremes, slow, value): LatencyHistogram.record over its\n"
               "bucket counts and [total, minimum, maximum]; values it does not take go to slow(value)")},
    {"set_background", (PyCFunction)(void (*)(void))set_background, METH_FASTCALL,
     PyDoc_STR("set_background(by_price, keys, changed, levels, start, is_bid, opposite_keys, level_type,\n"
               "empty_queue) -> index of the first level from start it left to Python (len: none)")},
    {"changed_sizes", (PyCFunction)(void (*)(void))changed_sizes, METH_FASTCALL,
     PyDoc_STR("changed_sizes(changed, by_price, descending) -> [(price, background + own or 0), ...]\n"
               "sorted by price")},
    {"top_keys", (PyCFunction)(void (*)(void))top_keys, METH_FASTCALL,
     PyDoc_STR("top_keys(sizes, count, negate) -> the count largest keys (price, or -price when\n"
               "negate) ascending; None when a price is not an int64 (use the pure path)")},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hftkit._native",
    .m_doc = PyDoc_STR("C loops for depth levels; pure-Python twins live beside their callers."),
    .m_size = -1,
    .m_methods = native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&GridType) < 0 || PyType_Ready(&CreditsType) < 0) {
        return NULL;
    }
    NAME_BACKGROUND = PyUnicode_InternFromString("background");
    NAME_TAIL = PyUnicode_InternFromString("tail");
    NAME_QUEUE = PyUnicode_InternFromString("queue");
    NAME_OWN = PyUnicode_InternFromString("own");
    if (NAME_BACKGROUND == NULL || NAME_TAIL == NULL || NAME_QUEUE == NULL || NAME_OWN == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Grid", (PyObject *)&GridType) < 0 ||
        PyModule_AddObjectRef(module, "Credits", (PyObject *)&CreditsType) < 0 ||
        PyModule_AddIntConstant(module, "MAX_DECIMAL_LENGTH", MAX_TEXT_LENGTH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
