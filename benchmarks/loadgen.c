/*
 * loadgen.c - single-threaded epoll WebSocket / raw-TCP load generator for
 * benchmarks/run.py.  Built at bench time into benchmarks/out/ (git-ignored):
 *
 *   cc -O2 -o benchmarks/out/loadgen benchmarks/loadgen.c -lssl -lcrypto -lz
 *   (add -DNO_TLS and/or -DNO_ZLIB, and drop the libraries, when the headers
 *    are missing; run.py does this fallback itself)
 *
 * Workloads (--workload):
 *   echo       N connections (--conns), K messages in flight each (--inflight),
 *              messages of S bytes (--size).  After --warmup seconds, counts
 *              completed round trips for --duration seconds, then drains,
 *              closes cleanly (Close 1000, waits for the server's Close/FIN)
 *              and prints one JSON line.
 *   handshake  C concurrent slots (--concurrency); each slot loops: connect,
 *              HTTP upgrade, echo one message, send Close 1000, wait for the
 *              server's Close and the server's FIN, close.  Counts completed
 *              cycles in the window.
 *   idle       opens N connections (C at a time), prints {"ready":...} and then
 *              holds them until stdin becomes readable/closed (or --hold-max
 *              seconds pass), closes them and exits.
 *
 * Modes: --mode ws (RFC 6455 client: fixed Sec-WebSocket-Key, 101 + accept
 * checked, masked frames, server frames must be unmasked) or --mode raw (plain
 * TCP: a "message" is S bytes echoed back on the byte stream; used for the raw
 * asyncio echo baseline and for the generator ceiling against a C echo server).
 * --tls wraps either in TLS (no certificate verification).  --deflate offers
 * permessage-deflate and sends pre-compressed (no context takeover) messages,
 * inflating the server's replies (context takeover honoured) and checking
 * their length.  --text sends compressible UTF-8 text instead of random bytes.
 *
 * Keeping the generator cheap (it must never be the bottleneck): frames are
 * pre-masked (8 variants); small frames are batched into one send(); frames
 * >= 256 KiB are sent by page reference (vmsplice + splice, no copy; disable
 * with --no-splice); payload bytes it never inspects are discarded in the
 * kernel with recv(MSG_TRUNC) (headers, control frames, TLS and compressed
 * payloads are read normally). Its own CPU use in the window is reported
 * (cpu_pct), with the time it waited for a CPU (runq_pct), so a run can show
 * that it was not the bottleneck.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef NO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif
#ifndef NO_ZLIB
#include <zlib.h>
#endif

typedef unsigned char u8;

enum { W_ECHO, W_HANDSHAKE, W_IDLE };
enum {
    S_FREE, S_CONNECTING, S_TLS, S_SEND_REQ, S_READ_RESP, S_OPEN,
    S_CLOSE_SENT, S_WAIT_FIN, S_DONE
};

#define NVAR 8
#define SMALL_FRAME 8192
#define RBUF_SIZE (256 * 1024)
#define HS_MAX 4096
#define CTL_MAX 512
#define PIPE_BYTES (1024 * 1024)
#define SPLICE_MIN (256 * 1024) /* below this, splice's extra syscall costs more than the copy */

static const char *WS_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
static const char *WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static struct {
    const char *host;
    int port;
    int ws;
    int workload;
    int conns;
    int inflight;
    size_t size;
    double duration, warmup, timeout, hold_max;
    int tls, deflate, text;
    int concurrency;
} cfg = {"127.0.0.1", 0, 1, W_ECHO, 1, 1, 32, 3.0, 1.0, 10.0, 300.0, 0, 0, 0, 16};

typedef struct conn {
    int fd;
    int idx;
    int state;
    unsigned evmask;
#ifndef NO_TLS
    SSL *ssl;
#endif
    /* handshake */
    char hs[HS_MAX];
    int hslen, hsoff;
    /* output */
    const u8 *out;
    size_t outlen, outoff;
    u8 *stage;
    size_t stagecap;
    long pending;
    unsigned variant;
    u8 ctl[CTL_MAX];
    int ctllen, ctloff;
    int shut_after_flush;
    int pipe_r, pipe_w;
    size_t pipe_n;
    /* input parser */
    u8 hdr[14];
    int hlen;
    int in_payload;
    uint64_t remain;
    u8 op, fin, rsv1;
    u8 msg_op, msg_comp;
    uint64_t msg_bytes;
    u8 cpay[128];
    int clen;
    uint64_t raw_acc;
    int deflate_ok, deflate_reset;
#ifndef NO_ZLIB
    z_stream zin;
    int zin_init;
#endif
    /* accounting */
    int inflight;
    double *ts;
    int ts_head, ts_n;
    double t_start;
    int close_rcvd;
} conn;

static struct {
    int ep;
    conn *conns;
    int nconns;
    const u8 *frames[NVAR];
    size_t framelen;
    u8 close_frame[8];
    u8 *rbuf;
    u8 *zscratch;
    double t0, t_win_start, t_win_end, t_meas0, t_meas1;
    int measuring, stopping, finished;
    uint64_t count;
    uint64_t bytes;
    uint64_t errors;
    char errmsg[256];
    uint64_t opened, failed, started;
    struct rusage ru0, ru1;
    double wait0, wait1;
    uint64_t hist[64 * 16];
    uint64_t hist_n;
#ifndef NO_TLS
    SSL_CTX *ctx;
#endif
    u8 *payload;
    size_t payload_len;
    int use_splice;
} g;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *msg) {
    printf("{\"error\": \"%s\"}\n", msg);
    fflush(stdout);
    exit(2);
}

static void set_err(const char *fmt, const char *detail) {
    g.errors++;
    if (!g.errmsg[0]) snprintf(g.errmsg, sizeof g.errmsg, fmt, detail ? detail : "");
}

/* ---- latency histogram (log-linear, 16 sub-buckets per power of two, ns) ---- */
static void hist_add(double seconds) {
    uint64_t v = (uint64_t)(seconds * 1e9);
    int idx;
    if (v < 16) idx = (int)v;
    else {
        int msb = 63 - __builtin_clzll(v);
        idx = (msb << 4) | (int)((v >> (msb - 4)) & 15);
    }
    if (idx >= 64 * 16) idx = 64 * 16 - 1;
    g.hist[idx]++;
    g.hist_n++;
}

static double hist_pct(double p) {
    if (!g.hist_n) return 0;
    uint64_t target = (uint64_t)(p * g.hist_n), acc = 0;
    for (int i = 0; i < 64 * 16; i++) {
        acc += g.hist[i];
        if (acc > target) {
            if (i < 16) return i / 1000.0;
            int msb = i >> 4, sub = i & 15;
            uint64_t v = ((uint64_t)(16 + sub)) << (msb - 4);
            return v / 1000.0; /* microseconds */
        }
    }
    return 0;
}

/* ---- payload / frame templates ---- */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t xrand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void make_payload(void) {
    g.payload_len = cfg.size;
    g.payload = malloc(cfg.size ? cfg.size : 1);
    if (!cfg.text) {
        for (size_t i = 0; i < cfg.size; i++) g.payload[i] = (u8)(xrand() >> 24);
        return;
    }
    /* Compressible, realistic-ish JSON-lines text (ratio ~4-6x with zlib). */
    static const char *words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
                                  "golf", "hotel", "india", "juliet", "kilo", "lima",
                                  "mike", "november", "oscar", "papa", "click", "view",
                                  "purchase", "login", "logout", "search", "scroll"};
    size_t nw = sizeof words / sizeof *words, pos = 0;
    char line[256];
    while (pos < cfg.size) {
        int n = snprintf(line, sizeof line,
                         "{\"id\":%llu,\"user\":\"%s_%s\",\"event\":\"%s\",\"value\":%u.%02u,"
                         "\"tags\":[\"%s\",\"%s\"]}\n",
                         (unsigned long long)(xrand() % 1000000), words[xrand() % nw],
                         words[xrand() % nw], words[16 + xrand() % 7],
                         (unsigned)(xrand() % 1000), (unsigned)(xrand() % 100),
                         words[xrand() % nw], words[xrand() % nw]);
        for (int i = 0; i < n && pos < cfg.size; i++) g.payload[pos++] = (u8)line[i];
    }
}

static size_t build_frame(u8 *dst, u8 op, int rsv1, const u8 *p, size_t n, const u8 mask[4]) {
    size_t h = 0;
    dst[h++] = 0x80 | (rsv1 ? 0x40 : 0) | op;
    if (n < 126) dst[h++] = 0x80 | (u8)n;
    else if (n < 65536) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (u8)(n >> 8);
        dst[h++] = (u8)n;
    } else {
        dst[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) dst[h++] = (u8)((uint64_t)n >> (8 * i));
    }
    memcpy(dst + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) dst[h + i] = p[i] ^ mask[i & 3];
    return h + n;
}

static void make_frames(void) {
    make_payload();
    if (!cfg.ws) {
        g.framelen = cfg.size;
        for (int v = 0; v < NVAR; v++) g.frames[v] = g.payload;
        return;
    }
    const u8 *body = g.payload;
    size_t blen = cfg.size;
    u8 op = cfg.text ? 0x1 : 0x2;
    int rsv1 = 0;
#ifndef NO_ZLIB
    u8 *comp = NULL;
    if (cfg.deflate) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) die("deflateInit2");
        size_t cap = deflateBound(&zs, cfg.size) + 64;
        comp = malloc(cap);
        zs.next_in = (u8 *)g.payload;
        zs.avail_in = (uInt)cfg.size;
        zs.next_out = comp;
        zs.avail_out = (uInt)cap;
        if (deflate(&zs, Z_SYNC_FLUSH) != Z_OK) die("deflate");
        blen = cap - zs.avail_out;
        deflateEnd(&zs);
        if (blen >= 4 && !memcmp(comp + blen - 4, "\x00\x00\xff\xff", 4)) blen -= 4;
        body = comp;
        rsv1 = 1;
    }
#else
    if (cfg.deflate) die("built without zlib (NO_ZLIB)");
#endif
    for (int v = 0; v < NVAR; v++) {
        u8 mask[4];
        uint64_t r = xrand();
        memcpy(mask, &r, 4);
        u8 *f = malloc(blen + 14);
        g.framelen = build_frame(f, op, rsv1, body, blen, mask);
        g.frames[v] = f;
    }
    u8 code[2] = {0x03, 0xE8}, cm[4] = {0x11, 0x22, 0x33, 0x44};
    build_frame(g.close_frame, 0x8, 0, code, 2, cm);
}

/* ---- I/O primitives ---- */
static int c_plain(conn *c);
static char ioerr[160]; /* detail of the last failed read/write */

static void note_ioerr(const char *op, int ssl_err) {
    int e = errno;
#ifndef NO_TLS
    unsigned long q = ERR_peek_error();
    if (ssl_err >= 0 && q) {
        snprintf(ioerr, sizeof ioerr, "%s: TLS error %d (%s)", op, ssl_err, ERR_reason_error_string(q));
        ERR_clear_error();
        return;
    }
    if (ssl_err >= 0) {
        snprintf(ioerr, sizeof ioerr, "%s: TLS error %d (%s)", op, ssl_err, e ? strerror(e) : "EOF");
        return;
    }
#endif
    (void)ssl_err;
    snprintf(ioerr, sizeof ioerr, "%s: %s", op, strerror(e));
}

/* >0 bytes, 0 EOF, -1 would block, -2 error */
static ssize_t c_read(conn *c, u8 *buf, size_t cap) {
#ifndef NO_TLS
    if (c->ssl) {
        int n = SSL_read(c->ssl, buf, (int)cap);
        if (n > 0) return n;
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
        if (e == SSL_ERROR_ZERO_RETURN) return 0;
        if (e == SSL_ERROR_SYSCALL && errno == 0) return 0;
        note_ioerr("read", e);
        return -2;
    }
#endif
    ssize_t n = recv(c->fd, buf, cap, 0);
    if (n > 0) return n;
    if (n == 0) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -1;
    note_ioerr("read", -1);
    return -2;
}

/* Large frames on plain TCP are sent from the (immutable) templates by page reference:
   vmsplice() into a per-connection pipe, splice() into the socket. No user->kernel copy, so
   the generator's cost per byte stays far below any server's. Bytes in the pipe are sent in
   order; `pipe_n` of them are there and were taken from the current frame. */
static ssize_t c_splice(conn *c, const u8 *buf, size_t len) {
    for (;;) {
        if (c->pipe_n == 0) {
            struct iovec iov = {(void *)buf, len < PIPE_BYTES ? len : PIPE_BYTES};
            ssize_t v = vmsplice(c->pipe_w, &iov, 1, SPLICE_F_NONBLOCK);
            if (v <= 0) {
                note_ioerr("vmsplice", -1);
                return -2;
            }
            c->pipe_n = (size_t)v;
        }
        ssize_t s = splice(c->pipe_r, NULL, c->fd, NULL, c->pipe_n, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (s > 0) {
            c->pipe_n -= (size_t)s;
            return s;
        }
        if (s < 0 && (errno == EAGAIN || errno == EINTR)) return -1;
        note_ioerr("splice", -1);
        return -2;
    }
}

static void pipe_open(conn *c) {
    int p[2];
    c->pipe_r = c->pipe_w = -1;
    c->pipe_n = 0;
    if (!g.use_splice || g.framelen < SPLICE_MIN || !c_plain(c)) return;
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return;
    if (fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES) < PIPE_BYTES) {
        /* cannot get a large pipe: plain send() then */
        close(p[0]);
        close(p[1]);
        return;
    }
    c->pipe_r = p[0];
    c->pipe_w = p[1];
}

static void pipe_close(conn *c) {
    if (c->pipe_r >= 0) close(c->pipe_r);
    if (c->pipe_w >= 0) close(c->pipe_w);
    c->pipe_r = c->pipe_w = -1;
    c->pipe_n = 0;
}

static int c_plain(conn *c) {
#ifndef NO_TLS
    if (c->ssl) return 0;
#endif
    (void)c;
    return 1;
}

/* Discard up to len received bytes without copying them (TCP + MSG_TRUNC). */
static ssize_t c_discard(conn *c, size_t len) {
    ssize_t n = recv(c->fd, g.rbuf, len, MSG_TRUNC | MSG_DONTWAIT);
    if (n > 0) return n;
    if (n == 0) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -1;
    note_ioerr("read", -1);
    return -2;
}

static ssize_t c_write(conn *c, const u8 *buf, size_t len) {
#ifndef NO_TLS
    if (c->ssl) {
        int n = SSL_write(c->ssl, buf, (int)(len > (1 << 30) ? (1 << 30) : len));
        if (n > 0) return n;
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
        note_ioerr("write", e);
        return -2;
    }
#endif
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -1;
    note_ioerr("write", -1);
    return -2;
}

static void set_events(conn *c, unsigned ev) {
    if (c->fd < 0 || ev == c->evmask) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &e);
    c->evmask = ev;
}

static void conn_finish(conn *c, int ok);
static void start_conn(conn *c);

static void queue_ctl(conn *c, const u8 *p, size_t n) {
    if (c->ctllen + (int)n > CTL_MAX) return;
    memcpy(c->ctl + c->ctllen, p, n);
    c->ctllen += (int)n;
}

/* Flush control bytes and queued message frames. Returns -1 on a fatal error. */
static int flush(conn *c) {
    for (;;) {
        if (c->outoff == c->outlen) {
            if (c->ctloff < c->ctllen) {
                ssize_t w = c_write(c, c->ctl + c->ctloff, c->ctllen - c->ctloff);
                if (w > 0) {
                    c->ctloff += (int)w;
                    if (c->ctloff == c->ctllen) c->ctloff = c->ctllen = 0;
                    continue;
                }
                if (w == -1) goto block;
                return -1;
            }
            if (c->pending == 0) {
                set_events(c, EPOLLIN);
                if (c->shut_after_flush) {
                    c->shut_after_flush = 0;
                    shutdown(c->fd, SHUT_WR);
                }
                return 0;
            }
            if (g.framelen <= SMALL_FRAME) {
                size_t n = c->stagecap / g.framelen;
                if (n > (size_t)c->pending) n = (size_t)c->pending;
                for (size_t i = 0; i < n; i++)
                    memcpy(c->stage + i * g.framelen, g.frames[c->variant++ % NVAR], g.framelen);
                c->out = c->stage;
                c->outlen = n * g.framelen;
                c->pending -= (long)n;
            } else {
                c->out = g.frames[c->variant++ % NVAR];
                c->outlen = g.framelen;
                c->pending--;
            }
            c->outoff = 0;
        }
        ssize_t w = c->out != c->stage && c->pipe_w >= 0
                        ? c_splice(c, c->out + c->outoff, c->outlen - c->outoff)
                        : c_write(c, c->out + c->outoff, c->outlen - c->outoff);
        if (w > 0) {
            c->outoff += (size_t)w;
            continue;
        }
        if (w == -1) goto block;
        return -1;
    }
block:
    set_events(c, EPOLLIN | EPOLLOUT);
    return 0;
}

static void queue_msg(conn *c, double t) {
    c->pending++;
    c->inflight++;
    if (c->ts) {
        int k = cfg.inflight;
        c->ts[(c->ts_head + c->ts_n) % k] = t;
        c->ts_n++;
    }
}

static void send_close(conn *c) {
    if (cfg.ws) {
        queue_ctl(c, g.close_frame, 8);
        c->state = S_CLOSE_SENT;
    } else {
        c->shut_after_flush = 1;
        c->state = S_WAIT_FIN;
    }
}

static void on_message(conn *c, uint64_t nbytes) {
    double t = now();
    if (nbytes != cfg.size) {
        char d[64];
        snprintf(d, sizeof d, "%llu", (unsigned long long)nbytes);
        set_err("echoed message has %s bytes, expected --size", d);
    }
    c->inflight--;
    if (c->ts && c->ts_n) {
        double t0 = c->ts[c->ts_head];
        c->ts_head = (c->ts_head + 1) % cfg.inflight;
        c->ts_n--;
        if (g.measuring && cfg.workload == W_ECHO) hist_add(t - t0);
    }
    if (cfg.workload == W_ECHO) {
        if (g.measuring) {
            g.count++;
            g.bytes += nbytes;
        }
        if (!g.stopping) queue_msg(c, t);
        else if (c->inflight == 0) send_close(c);
    } else if (cfg.workload == W_HANDSHAKE) {
        send_close(c);
    } else if (cfg.workload == W_IDLE) {
        g.opened++;
    }
}

#ifndef NO_ZLIB
static int inflate_chunk(conn *c, const u8 *p, size_t n) {
    c->zin.next_in = (u8 *)p;
    c->zin.avail_in = (uInt)n;
    for (int guard = 0; guard < 1000000; guard++) {
        c->zin.next_out = g.zscratch;
        c->zin.avail_out = RBUF_SIZE;
        int r = inflate(&c->zin, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR) return -1;
        c->msg_bytes += RBUF_SIZE - c->zin.avail_out;
        if (c->zin.avail_out != 0 && c->zin.avail_in == 0) return 0;
        if (r == Z_BUF_ERROR && c->zin.avail_out != 0) return -1;
    }
    return -1;
}
#endif

/* Frame parser: streams over the received bytes, never buffers payloads. */
static int ws_feed(conn *c, const u8 *p, size_t n) {
    while (n > 0) {
        if (!c->in_payload) {
            while (n > 0 && c->hlen < 2) c->hdr[c->hlen++] = *p++, n--;
            if (c->hlen < 2) return 0;
            if (c->hdr[1] & 0x80) {
                set_err("server frame is masked%s", NULL);
                return -1;
            }
            int l7 = c->hdr[1] & 0x7f;
            int need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            while (n > 0 && c->hlen < need) c->hdr[c->hlen++] = *p++, n--;
            if (c->hlen < need) return 0;
            uint64_t len = (uint64_t)l7;
            if (l7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            else if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
            }
            c->fin = c->hdr[0] >> 7;
            c->rsv1 = (c->hdr[0] >> 6) & 1;
            c->op = c->hdr[0] & 0x0f;
            c->remain = len;
            c->hlen = 0;
            c->in_payload = 1;
            if (c->op >= 8) {
                if (len > 125) {
                    set_err("control frame too long%s", NULL);
                    return -1;
                }
                c->clen = 0;
            } else if (c->op != 0) {
                c->msg_op = c->op;
                c->msg_comp = c->rsv1;
                c->msg_bytes = 0;
                if (c->msg_comp && !c->deflate_ok) {
                    set_err("RSV1 set without permessage-deflate%s", NULL);
                    return -1;
                }
            }
        }
        size_t take = c->remain < n ? (size_t)c->remain : n;
        if (take) {
            if (c->op >= 8) {
                memcpy(c->cpay + c->clen, p, take);
                c->clen += (int)take;
            } else if (c->msg_comp) {
#ifndef NO_ZLIB
                if (inflate_chunk(c, p, take) < 0) {
                    set_err("inflate failed%s", NULL);
                    return -1;
                }
#endif
            } else {
                c->msg_bytes += take;
            }
            if (p) p += take; /* p == NULL: payload already discarded by the kernel */
            n -= take;
            c->remain -= take;
        }
        if (c->remain == 0) {
            c->in_payload = 0;
            if (c->op == 0x9) { /* ping -> pong with the same payload */
                u8 f[140], m[4] = {1, 2, 3, 4};
                size_t fl = build_frame(f, 0xA, 0, c->cpay, (size_t)c->clen, m);
                queue_ctl(c, f, fl);
            } else if (c->op == 0x8) {
                c->close_rcvd = 1;
                if (c->state == S_CLOSE_SENT) c->state = S_WAIT_FIN;
                else if (c->state == S_OPEN) {
                    /* server-initiated close: answer, then wait for its FIN */
                    if (g.stopping || cfg.workload == W_IDLE) {
                        queue_ctl(c, g.close_frame, 8);
                        c->state = S_WAIT_FIN;
                    } else {
                        set_err("server closed the connection (close frame)%s", NULL);
                        queue_ctl(c, g.close_frame, 8);
                        c->state = S_WAIT_FIN;
                    }
                }
            } else if (c->op < 8 && c->fin) {
#ifndef NO_ZLIB
                if (c->msg_comp) {
                    static const u8 tail[4] = {0, 0, 0xff, 0xff};
                    if (inflate_chunk(c, tail, 4) < 0) {
                        set_err("inflate failed%s", NULL);
                        return -1;
                    }
                    if (c->deflate_reset) inflateReset(&c->zin);
                }
#endif
                if (c->state == S_OPEN) on_message(c, c->msg_bytes);
            }
        }
    }
    return 0;
}

static int raw_feed(conn *c, size_t n) {
    c->raw_acc += n;
    while (c->raw_acc >= cfg.size && c->inflight > 0) {
        c->raw_acc -= cfg.size;
        on_message(c, cfg.size);
    }
    return 0;
}

static void on_open(conn *c) {
    c->state = S_OPEN;
    if (cfg.workload == W_ECHO && c->pipe_r < 0) pipe_open(c);
    if (cfg.workload == W_ECHO || cfg.workload == W_HANDSHAKE || !cfg.ws) {
        int k = cfg.workload == W_ECHO ? cfg.inflight : 1;
        if (g.framelen <= SMALL_FRAME && !c->stage) {
            c->stagecap = g.framelen * (size_t)k;
            if (c->stagecap < 4096) c->stagecap = (4096 / g.framelen) * g.framelen;
            c->stage = malloc(c->stagecap);
        }
        if (cfg.workload == W_ECHO && !c->ts) c->ts = calloc((size_t)cfg.inflight, sizeof(double));
    }
    if (cfg.workload == W_HANDSHAKE || (cfg.workload == W_IDLE && !cfg.ws)) {
        /* raw idle: one echo first, so that "open" means the server has
           accepted and served the connection, as a 101 does in ws mode */
        queue_msg(c, now());
        if (flush(c) < 0) conn_finish(c, 0);
    } else {
        g.opened++;
    }
}

static int parse_response(conn *c) {
    char *end = memmem(c->hs, (size_t)c->hslen, "\r\n\r\n", 4);
    if (!end) {
        if (c->hslen >= HS_MAX - 1) {
            set_err("handshake response too large%s", NULL);
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - c->hs) + 4;
    c->hs[hlen - 2] = 0;
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char d[40];
        snprintf(d, sizeof d, "%.30s", c->hs);
        for (char *q = d; *q; q++)
            if (*q == '\r' || *q == '\n' || *q == '"') *q = ' ';
        set_err("upgrade refused: %s", d);
        return -1;
    }
    int accept_ok = 0;
    for (char *line = strstr(c->hs, "\r\n"); line && *line; line = strstr(line, "\r\n")) {
        line += 2;
        if (!strncasecmp(line, "Sec-WebSocket-Accept:", 21)) {
            char *v = line + 21;
            while (*v == ' ') v++;
            if (!strncmp(v, WS_ACCEPT, strlen(WS_ACCEPT))) accept_ok = 1;
        } else if (!strncasecmp(line, "Sec-WebSocket-Extensions:", 25)) {
            char *eol = strstr(line, "\r\n");
            size_t L = eol ? (size_t)(eol - line) : strlen(line);
            if (memmem(line, L, "permessage-deflate", 18)) c->deflate_ok = 1;
            if (memmem(line, L, "server_no_context_takeover", 26)) c->deflate_reset = 1;
        }
    }
    if (!accept_ok) {
        set_err("bad Sec-WebSocket-Accept%s", NULL);
        return -1;
    }
    if (cfg.deflate && !c->deflate_ok) {
        set_err("server did not accept permessage-deflate%s", NULL);
        return -1;
    }
#ifndef NO_ZLIB
    if (c->deflate_ok && !c->zin_init) {
        if (inflateInit2(&c->zin, -15) != Z_OK) return -1;
        c->zin_init = 1;
    }
#endif
    size_t extra = (size_t)c->hslen - hlen;
    on_open(c);
    if (extra && c->state == S_OPEN) {
        if (ws_feed(c, (u8 *)c->hs + hlen, extra) < 0) return -1;
    }
    return 1;
}

static void conn_reset_fields(conn *c) {
    c->hslen = c->hsoff = 0;
    c->out = NULL;
    c->outlen = c->outoff = 0;
    c->pending = 0;
    c->ctllen = c->ctloff = 0;
    c->shut_after_flush = 0;
    c->hlen = 0;
    c->in_payload = 0;
    c->raw_acc = 0;
    c->inflight = 0;
    c->ts_head = c->ts_n = 0;
    c->close_rcvd = 0;
    c->deflate_ok = c->deflate_reset = 0;
    c->evmask = 0;
}

static void conn_finish(conn *c, int ok) {
    pipe_close(c);
    if (c->fd >= 0) {
        epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
#ifndef NO_TLS
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
#endif
#ifndef NO_ZLIB
    if (c->zin_init) {
        inflateEnd(&c->zin);
        c->zin_init = 0;
    }
#endif
    int was_open = c->state >= S_OPEN;
    c->state = S_DONE;
    if (cfg.workload == W_HANDSHAKE) {
        if (ok) {
            if (g.measuring) {
                g.count++;
                hist_add(now() - c->t_start);
            }
        } else if (!g.stopping) {
            g.errors++;
        }
        if (!g.stopping) start_conn(c);
    } else if (cfg.workload == W_IDLE || cfg.workload == W_ECHO) {
        if (!ok && !was_open) g.failed++;
        else if (!ok && !g.stopping) g.errors++;
    }
}

static void start_conn(conn *c) {
    conn_reset_fields(c);
    c->t_start = now();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        set_err("socket() failed: %s", strerror(errno));
        c->state = S_DONE;
        g.failed++;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
    inet_pton(AF_INET, cfg.host, &sa.sin_addr);
    g.started++;
    int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno != EINPROGRESS) {
        set_err("connect() failed: %s", strerror(errno));
        conn_finish(c, 0);
        return;
    }
    c->state = S_CONNECTING;
    struct epoll_event e = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    c->evmask = EPOLLOUT | EPOLLIN;
    epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &e);
}

static void advance(conn *c, unsigned ev) {
    for (;;) {
        switch (c->state) {
        case S_CONNECTING: {
            int err = 0;
            socklen_t l = sizeof err;
            if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) {
                set_err("connect failed: %s", strerror(err));
                conn_finish(c, 0);
                return;
            }
#ifndef NO_TLS
            if (cfg.tls) {
                c->ssl = SSL_new(g.ctx);
                SSL_set_fd(c->ssl, c->fd);
                SSL_set_connect_state(c->ssl);
                c->state = S_TLS;
                continue;
            }
#endif
            c->state = S_SEND_REQ;
            continue;
        }
        case S_TLS: {
#ifndef NO_TLS
            int r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                c->state = S_SEND_REQ;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) {
                set_events(c, EPOLLIN);
                return;
            }
            if (e == SSL_ERROR_WANT_WRITE) {
                set_events(c, EPOLLIN | EPOLLOUT);
                return;
            }
            set_err("TLS handshake failed%s", NULL);
            ERR_clear_error();
            conn_finish(c, 0);
#endif
            return;
        }
        case S_SEND_REQ: {
            if (!cfg.ws) {
                set_events(c, EPOLLIN);
                on_open(c);
                if (c->state != S_OPEN) return;
                continue;
            }
            if (c->hslen == 0) {
                c->hslen = snprintf(c->hs, HS_MAX,
                                    "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                    "Sec-WebSocket-Version: 13\r\n%s\r\n",
                                    cfg.host, cfg.port, WS_KEY,
                                    cfg.deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
            }
            while (c->hsoff < c->hslen) {
                ssize_t w = c_write(c, (u8 *)c->hs + c->hsoff, (size_t)(c->hslen - c->hsoff));
                if (w > 0) c->hsoff += (int)w;
                else if (w == -1) {
                    set_events(c, EPOLLIN | EPOLLOUT);
                    return;
                } else {
                    set_err("upgrade request: %s", ioerr);
                    conn_finish(c, 0);
                    return;
                }
            }
            c->hslen = 0;
            c->state = S_READ_RESP;
            set_events(c, EPOLLIN);
            continue;
        }
        case S_READ_RESP: {
            ssize_t n = c_read(c, (u8 *)c->hs + c->hslen, (size_t)(HS_MAX - 1 - c->hslen));
            if (n == -1) return;
            if (n <= 0) {
                set_err("%s", n == 0 ? "server closed the connection before answering the upgrade" : ioerr);
                conn_finish(c, 0);
                return;
            }
            c->hslen += (int)n;
            int r = parse_response(c);
            if (r < 0) {
                conn_finish(c, 0);
                return;
            }
            if (r == 0) continue;
            if (c->state == S_DONE || c->fd < 0) return;
            if (flush(c) < 0) {
                conn_finish(c, 0);
                return;
            }
            return;
        }
        case S_OPEN:
        case S_CLOSE_SENT:
        case S_WAIT_FIN: {
            int loops = 0;
            for (;;) {
                /* Payload bytes the generator never looks at (plain TCP, uncompressed data
                   frames, raw mode) are discarded in the kernel with MSG_TRUNC: no copy to
                   user space, so large-message echo costs the generator about half as much.
                   Headers, control frames, TLS and compressed payloads are read normally. */
                size_t want = RBUF_SIZE;
                int discard = 0;
                if (c_plain(c)) {
                    if (!cfg.ws) discard = 1;
                    else if (c->in_payload && c->op < 8 && !c->msg_comp && c->remain >= 512) {
                        discard = 1;
                        if (c->remain < want) want = (size_t)c->remain;
                    }
                }
                ssize_t n = discard ? c_discard(c, want) : c_read(c, g.rbuf, RBUF_SIZE);
                if (n == -1) break;
                if (n == 0) {
                    int ok = c->state == S_WAIT_FIN;
                    if (!ok && !g.stopping && cfg.workload != W_IDLE)
                        set_err("server closed TCP %s", c->state == S_OPEN ? "while open" : "before its Close frame");
                    conn_finish(c, ok);
                    return;
                }
                if (n < 0) {
                    if (!g.stopping) set_err("%s", ioerr);
                    conn_finish(c, 0);
                    return;
                }
                int r = cfg.ws ? ws_feed(c, discard ? NULL : g.rbuf, (size_t)n) : raw_feed(c, (size_t)n);
                if (r < 0) {
                    conn_finish(c, 0);
                    return;
                }
#ifndef NO_TLS
                if (c->ssl) continue; /* drain OpenSSL's buffer: epoll can't see it */
#endif
                if ((size_t)n < want || ++loops >= 8) break;
            }
            if (flush(c) < 0) {
                if (!g.stopping) set_err("%s", ioerr);
                conn_finish(c, 0);
            }
            return;
        }
        default:
            return;
        }
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host H] [--mode ws|raw] [--workload echo|handshake|idle]\n"
            "  [--conns N] [--inflight K] [--size S] [--duration D] [--warmup W]\n"
            "  [--concurrency C] [--timeout T] [--hold-max T] [--tls] [--deflate] [--text]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (ARG("--host")) cfg.host = v;
        else if (ARG("--port")) cfg.port = atoi(v);
        else if (ARG("--mode")) cfg.ws = strcmp(v, "raw") != 0;
        else if (ARG("--workload"))
            cfg.workload = !strcmp(v, "handshake") ? W_HANDSHAKE : !strcmp(v, "idle") ? W_IDLE : W_ECHO;
        else if (ARG("--conns")) cfg.conns = atoi(v);
        else if (ARG("--inflight")) cfg.inflight = atoi(v);
        else if (ARG("--size")) cfg.size = (size_t)atoll(v);
        else if (ARG("--duration")) cfg.duration = atof(v);
        else if (ARG("--warmup")) cfg.warmup = atof(v);
        else if (ARG("--concurrency")) cfg.concurrency = atoi(v);
        else if (ARG("--timeout")) cfg.timeout = atof(v);
        else if (ARG("--hold-max")) cfg.hold_max = atof(v);
        else if (!strcmp(a, "--tls")) cfg.tls = 1;
        else if (!strcmp(a, "--deflate")) cfg.deflate = 1;
        else if (!strcmp(a, "--text")) cfg.text = 1;
        else if (!strcmp(a, "--no-splice")) g.use_splice = -1;
        else usage();
#undef ARG
    }
    if (!cfg.port || cfg.conns < 1 || cfg.inflight < 1 || cfg.concurrency < 1) usage();
    if (!cfg.ws && cfg.size == 0) usage();
#ifdef NO_TLS
    if (cfg.tls) die("built without OpenSSL (NO_TLS)");
#endif
}

/* nanoseconds this thread spent runnable but waiting for a CPU (other load) */
static double runq_wait_ns(void) {
    FILE *f = fopen("/proc/self/schedstat", "r");
    unsigned long long run = 0, wait = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &run, &wait) != 2) wait = 0;
    fclose(f);
    return (double)wait;
}

static double cpu_seconds(const struct rusage *r) {
    return r->ru_utime.tv_sec + r->ru_utime.tv_usec * 1e-6 + r->ru_stime.tv_sec + r->ru_stime.tv_usec * 1e-6;
}

static void report(double window) {
    double cpu = cpu_seconds(&g.ru1) - cpu_seconds(&g.ru0);
    printf("{\"workload\": \"%s\", \"mode\": \"%s\", \"tls\": %d, \"deflate\": %d, \"conns\": %d, "
           "\"inflight\": %d, \"size\": %zu, \"duration\": %.3f, \"count\": %llu, "
           "\"per_s\": %.1f, \"mb_per_s\": %.2f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"cpu_pct\": %.1f, \"runq_pct\": %.1f, \"errors\": %llu, \"error\": \"%s\"}\n",
           cfg.workload == W_ECHO ? "echo" : cfg.workload == W_HANDSHAKE ? "handshake" : "idle",
           cfg.ws ? "ws" : "raw", cfg.tls, cfg.deflate, cfg.workload == W_HANDSHAKE ? cfg.concurrency : cfg.conns,
           cfg.inflight, cfg.size, window, (unsigned long long)g.count, window > 0 ? g.count / window : 0.0,
           window > 0 ? g.bytes / window / 1e6 : 0.0, hist_pct(0.5), hist_pct(0.99), window > 0 ? 100.0 * cpu / window : 0,
           window > 0 ? 100.0 * (g.wait1 - g.wait0) / 1e9 / window : 0, (unsigned long long)g.errors, g.errmsg);
    fflush(stdout);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
#ifndef NO_TLS
    if (cfg.tls) {
        g.ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(g.ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(g.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* read the socket in large chunks (as asyncio's SSL layer does), not record by record */
        SSL_CTX_set_read_ahead(g.ctx, 1);
        SSL_CTX_set_default_read_buffer_len(g.ctx, 256 * 1024);
    }
#endif
    make_frames();
    g.use_splice = g.use_splice == 0; /* on unless --no-splice */
    g.rbuf = malloc(RBUF_SIZE);
    g.zscratch = malloc(RBUF_SIZE);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.nconns = cfg.workload == W_HANDSHAKE ? cfg.concurrency : cfg.conns;
    g.conns = calloc((size_t)g.nconns, sizeof(conn));
    for (int i = 0; i < g.nconns; i++) {
        g.conns[i].fd = -1;
        g.conns[i].pipe_r = g.conns[i].pipe_w = -1;
        g.conns[i].idx = i;
        g.conns[i].state = S_FREE;
    }
    if (cfg.workload == W_IDLE) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(g.ep, EPOLL_CTL_ADD, 0, &e);
    }

    int next = 0;
    int limit = cfg.workload == W_ECHO ? g.nconns : cfg.concurrency;
    for (; next < g.nconns && next < limit; next++) start_conn(&g.conns[next]);

    g.t0 = now();
    double setup_deadline = g.t0 + cfg.timeout;
    int running = 0;   /* echo/handshake: measurement phases started */
    int ready = 0;     /* idle: all opened */
    double hard_deadline = g.t0 + cfg.timeout + cfg.warmup + cfg.duration + cfg.hold_max + 10;
    double stop_deadline = 0;
    struct epoll_event evs[512];

    if (cfg.workload == W_HANDSHAKE) {
        running = 1;
        g.t_win_start = g.t0 + cfg.warmup;
        g.t_win_end = g.t_win_start + cfg.duration;
    }

    for (;;) {
        double t = now();
        if (t > hard_deadline) {
            set_err("hard deadline reached%s", NULL);
            break;
        }
        /* phase transitions */
        if (cfg.workload == W_ECHO && !running) {
            if (g.opened == (uint64_t)g.nconns) {
                running = 1;
                double tt = now();
                for (int i = 0; i < g.nconns; i++) {
                    conn *c = &g.conns[i];
                    for (int k = 0; k < cfg.inflight; k++) queue_msg(c, tt);
                    if (flush(c) < 0) conn_finish(c, 0);
                }
                g.t_win_start = tt + cfg.warmup;
                g.t_win_end = g.t_win_start + cfg.duration;
            } else if (g.failed || t > setup_deadline) {
                if (!g.errmsg[0]) set_err("could not open all connections%s", NULL);
                break;
            }
        }
        if (running && !g.measuring && !g.stopping && t >= g.t_win_start) {
            g.measuring = 1;
            g.t_meas0 = t;
            getrusage(RUSAGE_SELF, &g.ru0);
            g.wait0 = runq_wait_ns();
        }
        if (running && g.measuring && t >= g.t_win_end) {
            getrusage(RUSAGE_SELF, &g.ru1);
            g.wait1 = runq_wait_ns();
            g.t_meas1 = t;
            g.measuring = 0;
            g.stopping = 1;
            stop_deadline = t + 3.0;
            for (int i = 0; i < g.nconns; i++) {
                conn *c = &g.conns[i];
                if (c->state == S_OPEN && c->inflight == 0 && cfg.workload == W_ECHO) {
                    send_close(c);
                    if (flush(c) < 0) conn_finish(c, 0);
                }
                if (cfg.workload == W_HANDSHAKE && c->state < S_OPEN && c->fd >= 0) conn_finish(c, 1);
            }
        }
        if (g.stopping) {
            int live = 0;
            for (int i = 0; i < g.nconns; i++)
                if (g.conns[i].fd >= 0) live++;
            if (!live || t > stop_deadline) break;
        }
        if (cfg.workload == W_HANDSHAKE && !g.stopping) {
            for (int i = 0; i < g.nconns; i++) {
                conn *c = &g.conns[i];
                if (c->fd >= 0 && t - c->t_start > 5.0) {
                    set_err("handshake cycle timed out (5 s)%s", NULL);
                    conn_finish(c, 0);
                }
            }
        }
        if (cfg.workload == W_IDLE) {
            int inprog = 0;
            for (int i = 0; i < next; i++)
                if (g.conns[i].fd >= 0 && (g.conns[i].state < S_OPEN || g.conns[i].inflight > 0)) inprog++;
            while (next < g.nconns && inprog < cfg.concurrency) {
                start_conn(&g.conns[next++]);
                inprog++;
            }
            if (!ready && g.opened + g.failed == (uint64_t)g.nconns) {
                ready = 1;
                hard_deadline = now() + cfg.hold_max;
                printf("{\"ready\": true, \"opened\": %llu, \"failed\": %llu, \"open_s\": %.3f, "
                       "\"error\": \"%s\"}\n",
                       (unsigned long long)g.opened, (unsigned long long)g.failed, now() - g.t0, g.errmsg);
                fflush(stdout);
            }
            if (!ready && t > setup_deadline + 60) {
                set_err("idle: could not open all connections in time%s", NULL);
                break;
            }
        }

        int timeout_ms = 100;
        if (running && !g.measuring && !g.stopping) {
            double dt = g.t_win_start - t;
            if (dt < 0.1) timeout_ms = dt > 0 ? (int)(dt * 1000) + 1 : 0;
        } else if (g.measuring) {
            double dt = g.t_win_end - t;
            if (dt < 0.1) timeout_ms = dt > 0 ? (int)(dt * 1000) + 1 : 0;
        }
        int n = epoll_wait(g.ep, evs, 512, timeout_ms);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) { /* stdin: idle mode release */
                char buf[256];
                ssize_t r = read(0, buf, sizeof buf);
                (void)r;
                g.stopping = 1;
                epoll_ctl(g.ep, EPOLL_CTL_DEL, 0, NULL);
                goto done;
            }
            if (c->fd < 0) continue;
            advance(c, evs[i].events);
        }
    }
done:
    if (cfg.workload == W_IDLE) {
        g.stopping = 1;
        for (int i = 0; i < g.nconns; i++)
            if (g.conns[i].fd >= 0) conn_finish(&g.conns[i], 1);
        printf("{\"closed\": true, \"errors\": %llu, \"error\": \"%s\"}\n", (unsigned long long)g.errors, g.errmsg);
        fflush(stdout);
        return 0;
    }
    if (!running || g.t_meas1 == 0) {
        /* never reached the end of the window */
        if (!g.errmsg[0]) set_err("measurement window not completed%s", NULL);
        getrusage(RUSAGE_SELF, &g.ru1);
        report(0);
        return 1;
    }
    if (g.count == 0 && !g.errmsg[0]) {
        set_err("no %s completed in the measurement window (server not answering?)",
                cfg.workload == W_HANDSHAKE ? "handshake cycle" : "round trip");
    }
    report(g.t_meas1 - g.t_meas0);
    return 0;
}
