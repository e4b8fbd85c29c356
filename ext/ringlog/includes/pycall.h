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
#endif
