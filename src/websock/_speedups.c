/*
 * websock._speedups: optional C accelerator for the per-byte work of the protocol core.
 *
 * apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated
 * (RFC 6455 section 5.3). Same signature and results as the pure-Python
 * websock.protocol.frames.apply_mask, which stays the fallback when this module
 * is not built. The loop works a machine word at a time; compilers vectorise it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* dst[i] = src[i] ^ mask[i % 4] for i < n, a machine word at a time. */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *mask)
{
    Py_ssize_t i = 0;
    uint32_t mask32;
    uint64_t mask64;

    memcpy(&mask32, mask, 4);
    mask64 = ((uint64_t)mask32 << 32) | mask32;
    /* Whole 8-byte words; memcpy keeps unaligned access well-defined. */
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= mask64;
        memcpy(dst + i, &word, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ mask[i & 3];
    }
}

static PyObject *
apply_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result;
    const unsigned char *src;
    unsigned char *dst;
    Py_ssize_t n;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments (data, mask)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto error;
    }
    n = data.len;
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL) {
        goto error;
    }
    src = (const unsigned char *)data.buf;
    dst = (unsigned char *)PyBytes_AS_STRING(result);
    xor_mask(dst, src, n, (const unsigned char *)mask.buf);
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;

error:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return NULL;
}

/*
 * masked_frame(prefix, data, mask) -> bytes: prefix + apply_mask(data, mask), built in one
 * allocation so that a client's frame costs one copy of its payload, not two.
 */
static PyObject *
masked_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer prefix, data, mask;
    PyObject *result = NULL;
    const unsigned char *src;
    unsigned char *dst;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "masked_frame() takes exactly 3 arguments (prefix, data, mask)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &prefix, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&prefix);
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (result == NULL) {
        goto done;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(result);
    memcpy(dst, prefix.buf, prefix.len);
    dst += prefix.len;
    src = (const unsigned char *)data.buf;
    xor_mask(dst, src, data.len, (const unsigned char *)mask.buf);

done:
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"masked_frame", (PyCFunction)(void (*)(void))masked_frame, METH_FASTCALL,
     "masked_frame(prefix, data, mask) -> bytes\n\nprefix + data XORed with the mask repeated."},
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the 4-byte mask repeated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "websock._speedups",
    "Optional C accelerator for websock's protocol core.",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
