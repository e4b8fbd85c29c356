# Declarations of includes/pycall.h: one vectorcall per Python handler call.
from cpython.object cimport PyObject


cdef extern from "pycall.h":
    ctypedef void* vectorcallfunc
    vectorcallfunc rl_vectorcall_of(object callable)
    object rl_vectorcall(vectorcallfunc f, object callable, PyObject** args, size_t nargs)
    object rl_seq_int(PyObject** cache, long long seq)
