/* Calling a Python handler per event: the callee's vectorcall function, found once, called
 * straight (what PyObject_Vectorcall does per call: find it, then check the result). */
#ifndef RINGLOG_PYCALL_H
#define RINGLOG_PYCALL_H
#include <Python.h>

/* The callable's vectorcall function, or PyObject_Vectorcall's generic path (NULL: the
 * callable has none, e.g. a class instance with __call__). */
static inline vectorcallfunc rl_vectorcall_of(PyObject *callable) {
    return PyVectorcall_Function(callable);
}

/* callable(*args[0:nargs]) with args[-1] writable (PY_VECTORCALL_ARGUMENTS_OFFSET): a new
 * reference, or NULL with an exception set. */
static inline PyObject *rl_vectorcall(vectorcallfunc f, PyObject *callable,
                                      PyObject *const *args, size_t nargs) {
    size_t nargsf = nargs | PY_VECTORCALL_ARGUMENTS_OFFSET;
    return f != NULL ? f(callable, args, nargsf, NULL)
                     : PyObject_Vectorcall(callable, args, nargsf, NULL);
}
/* The `sequence` int of one handler call (a new reference, or NULL with an exception set).
 * A fresh int costs an allocation and a free per event; instead the last one, kept in
 * *cache, is rewritten in place when the loop holds the only reference to it: no handler
 * kept it, so nobody can see it change. Only a one-digit int that is not one of the shared
 * small ints (256 < seq < 2**PyLong_SHIFT) is kept, and only on CPython 3.11, whose int
 * layout this writes (3.12 changed it): elsewhere, or when kept, a new int as usual. */
static inline PyObject *rl_seq_int(PyObject **cache, long long seq) {
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(Py_LIMITED_API)
    int reusable = seq > 256 && seq < (1LL << PyLong_SHIFT);
    PyObject *o = *cache;
    if (reusable && o != NULL && Py_REFCNT(o) == 1) {
        ((PyLongObject *)o)->ob_digit[0] = (digit)seq;  /* one digit before and after */
        Py_INCREF(o);
        return o;
    }
    o = PyLong_FromLongLong(seq);
    if (o != NULL && reusable) {
        Py_INCREF(o);
        Py_XSETREF(*cache, o);  /* the old one lives on in whoever kept it */
    }
    return o;
#else
    (void)cache;
    return PyLong_FromLongLong(seq);
#endif
}
#endif
