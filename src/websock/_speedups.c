/*
 * websock._speedups: optional C accelerator for the per-byte work of the protocol core.
 *
 * apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated
 * (RFC 6455 section 5.3). Same signature and results as the pure-Python
 * websock.protocol.frames.apply_mask, which stays the fallback when this module
 * is not built. The loop works a machine word at a time; compilers vectorise it.
 *
 * mask_inplace(buffer, mask, offset) -> None: the same XOR in place, in a writable buffer,
 * starting at phase ``offset`` of the mask.
 *
 * message_buffer(n) -> (bytes, memoryview): a new bytes object of n bytes and a writable
 * view of it, so that a large message can be received straight into the bytes object the
 * application gets (no copy after the kernel's). The view keeps the bytes object alive.
 * The caller must fill it completely, and must not hand the bytes out while it still
 * writes to it (see websock.protocol.connection).
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

/* Copy the 4-byte mask out of `obj` into `out`; -1 with an exception set otherwise. */
static int
get_mask(PyObject *obj, unsigned char out[4])
{
    Py_buffer mask;

    if (PyObject_GetBuffer(obj, &mask, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (mask.len != 4) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        return -1;
    }
    memcpy(out, mask.buf, 4);
    PyBuffer_Release(&mask);
    return 0;
}

static PyObject *
apply_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    unsigned char mask[4];
    PyObject *result;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments (data, mask)");
        return NULL;
    }
    if (get_mask(args[1], mask) < 0 || PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_mask((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                 data.len, mask);
    }
    PyBuffer_Release(&data);
    return result;
}

/*
 * masked_frame(prefix, data, mask) -> bytes: prefix + apply_mask(data, mask), built in one
 * allocation so that a client's frame costs one copy of its payload, not two.
 */
static PyObject *
masked_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer prefix, data;
    unsigned char mask[4];
    PyObject *result;
    unsigned char *dst;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "masked_frame() takes exactly 3 arguments (prefix, data, mask)");
        return NULL;
    }
    if (get_mask(args[2], mask) < 0 || PyObject_GetBuffer(args[0], &prefix, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&prefix);
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (result != NULL) {
        dst = (unsigned char *)PyBytes_AS_STRING(result);
        memcpy(dst, prefix.buf, prefix.len);
        xor_mask(dst + prefix.len, (const unsigned char *)data.buf, data.len, mask);
    }
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
mask_inplace(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    Py_ssize_t offset;
    unsigned char mask[4], rotated[4];
    int i;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "mask_inplace() takes exactly 3 arguments (buffer, mask, offset)");
        return NULL;
    }
    offset = PyLong_AsSsize_t(args[2]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (get_mask(args[1], mask) < 0 || PyObject_GetBuffer(args[0], &data, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    for (i = 0; i < 4; i++) {
        rotated[i] = mask[(offset + i) & 3];
    }
    xor_mask((unsigned char *)data.buf, (const unsigned char *)data.buf, data.len, rotated);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

/* A buffer exporter over a bytes object, writable, holding a reference to it. */
typedef struct {
    PyObject_HEAD
    PyObject *bytes;
} WritableBytes;

static int
writable_bytes_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    PyObject *bytes = ((WritableBytes *)self)->bytes;
    return PyBuffer_FillInfo(view, self, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes), 0, flags);
}

static void
writable_bytes_dealloc(PyObject *self)
{
    Py_XDECREF(((WritableBytes *)self)->bytes);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs writable_bytes_as_buffer = {writable_bytes_getbuffer, NULL};

static PyTypeObject WritableBytesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "websock._speedups.WritableBytes",
    .tp_basicsize = sizeof(WritableBytes),
    .tp_dealloc = writable_bytes_dealloc,
    .tp_as_buffer = &writable_bytes_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writable buffer over a new bytes object (see message_buffer).",
};

static PyObject *
message_buffer(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    PyObject *bytes, *exporter, *view, *result;

    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* bytes of length 0 and 1 are shared singletons: never write into those. */
    if (n < 2) {
        PyErr_SetString(PyExc_ValueError, "message_buffer() needs at least 2 bytes");
        return NULL;
    }
    bytes = PyBytes_FromStringAndSize(NULL, n);
    if (bytes == NULL) {
        return NULL;
    }
    exporter = (PyObject *)PyObject_New(WritableBytes, &WritableBytesType);
    if (exporter == NULL) {
        Py_DECREF(bytes);
        return NULL;
    }
    ((WritableBytes *)exporter)->bytes = bytes;
    Py_INCREF(bytes);
    view = PyMemoryView_FromObject(exporter);
    Py_DECREF(exporter);
    if (view == NULL) {
        Py_DECREF(bytes);
        return NULL;
    }
    result = PyTuple_Pack(2, bytes, view);
    Py_DECREF(bytes);
    Py_DECREF(view);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"mask_inplace", (PyCFunction)(void (*)(void))mask_inplace, METH_FASTCALL,
     "mask_inplace(buffer, mask, offset) -> None\n\nXOR a writable buffer in place with the mask, from phase offset."},
    {"message_buffer", (PyCFunction)message_buffer, METH_O,
     "message_buffer(n) -> (bytes, memoryview)\n\nA new bytes object and a writable view of it."},
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
    if (PyType_Ready(&WritableBytesType) < 0) {
        return NULL;
    }
    return PyModule_Create(&speedups_module);
}
