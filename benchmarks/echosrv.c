/*
 * echosrv.c - single-threaded epoll echo server used as the *reference* in
 * benchmarks/run.py: it shows the load generator's ceiling (what loadgen can
 * drive when the server costs next to nothing) and is the "fast server" that
 * the Python client benchmarks talk to.  Built at bench time into
 * benchmarks/out/ (git-ignored).
 *
 *   echosrv --port P [--mode raw|ws] [--tls CERT KEY] [--deflate]
 *           [--max-seconds T]
 *
 * raw: echoes bytes; closes on EOF.
 * ws:  minimal RFC 6455 server: handshake (computes Sec-WebSocket-Accept),
 *      unmasks client frames and echoes them unmasked (same opcode, same
 *      fragmentation); answers Ping with Pong; answers Close with Close and
 *      then closes TCP.  With --deflate it accepts permessage-deflate and
 *      echoes compressed frames verbatim (valid: the client's inflater sees
 *      exactly the byte stream its own deflater produced), so the cost of
 *      compression lands only on the generator.
 * Prints "READY <port>" on stdout once listening; exits on stdin EOF or after
 * --max-seconds.
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef NO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

typedef unsigned char u8;

#define RBUF (256 * 1024)
#define HS_MAX 8192
#define OUT_HIGH (4 * 1024 * 1024)

static int ws_mode = 0, use_tls = 0, deflate_ok = 0;
static int ep;
static u8 *rbuf;
#ifndef NO_TLS
static SSL_CTX *ctx;
#endif

typedef struct {
    int fd;
    unsigned evmask;
#ifndef NO_TLS
    SSL *ssl;
    int tls_done;
#endif
    int upgraded;
    char hs[HS_MAX];
    int hslen;
    /* frame parser */
    u8 hdr[14];
    int hlen, in_payload;
    uint64_t remain, pos;
    u8 mask[4], op;
    u8 cpay[128];
    int clen;
    int closing;
    /* output queue */
    u8 *out;
    size_t outlen, outoff, outcap;
    int close_after_flush;
} conn;

/* ---- SHA-1 (for Sec-WebSocket-Accept only) ---- */
static void sha1(const u8 *data, size_t len, u8 out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    u8 *m = calloc(total, 1);
    memcpy(m, data, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (u8)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) {
            uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
            w[i] = (x << 1) | (x >> 31);
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
            else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
            else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            else f = b ^ c ^ d, k = 0xCA62C1D6;
            uint32_t t = ((a << 5) | (a >> 27)) + f + e + k + w[i];
            e = d, d = c, c = (b << 30) | (b >> 2), b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (u8)(h[i] >> (24 - 8 * j));
}

static void b64(const u8 *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---- I/O ---- */
static ssize_t c_read(conn *c, u8 *b, size_t n) {
#ifndef NO_TLS
    if (c->ssl) {
        int r = SSL_read(c->ssl, b, (int)n);
        if (r > 0) return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) return 0;
        ERR_clear_error();
        return -2;
    }
#endif
    ssize_t r = recv(c->fd, b, n, 0);
    if (r >= 0) return r;
    return (errno == EAGAIN || errno == EINTR) ? -1 : -2;
}

static ssize_t c_write(conn *c, const u8 *b, size_t n) {
#ifndef NO_TLS
    if (c->ssl) {
        int r = SSL_write(c->ssl, b, (int)(n > (1u << 30) ? (1u << 30) : n));
        if (r > 0) return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -1;
        ERR_clear_error();
        return -2;
    }
#endif
    ssize_t r = send(c->fd, b, n, MSG_NOSIGNAL);
    if (r >= 0) return r;
    return (errno == EAGAIN || errno == EINTR) ? -1 : -2;
}

static void set_ev(conn *c, unsigned ev) {
    if (ev == c->evmask) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->evmask = ev;
}

static void conn_close(conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
#ifndef NO_TLS
    if (c->ssl) SSL_free(c->ssl);
#endif
    free(c->out);
    free(c);
}

static void out_append(conn *c, const u8 *p, size_t n) {
    if (c->outoff && c->outoff == c->outlen) c->outoff = c->outlen = 0;
    if (c->outlen + n > c->outcap) {
        if (c->outoff) {
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        if (c->outlen + n > c->outcap) {
            size_t cap = c->outcap ? c->outcap : 65536;
            while (cap < c->outlen + n) cap *= 2;
            c->out = realloc(c->out, cap);
            c->outcap = cap;
        }
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

/* Queue n bytes for sending; large chunks go straight to the socket (writev behind whatever
   is already queued) instead of being copied into the queue first. */
static void out_put(conn *c, const u8 *p, size_t n) {
    int plain = 1;
#ifndef NO_TLS
    plain = c->ssl == NULL;
#endif
    if (n >= 16384 && plain && !c->close_after_flush) {
        struct iovec iov[2];
        int k = 0;
        size_t q = c->outlen - c->outoff;
        if (q) {
            iov[k].iov_base = c->out + c->outoff;
            iov[k].iov_len = q;
            k++;
        }
        iov[k].iov_base = (void *)p;
        iov[k].iov_len = n;
        k++;
        ssize_t w = writev(c->fd, iov, k);
        if (w > 0) {
            if ((size_t)w < q) {
                c->outoff += (size_t)w;
            } else {
                c->outoff = c->outlen = 0;
                p += (size_t)w - q;
                n -= (size_t)w - q;
            }
        }
    }
    if (n) out_append(c, p, n);
}

/* returns -1 when the connection must be dropped, 1 when it was closed cleanly */
static int flush(conn *c) {
    while (c->outoff < c->outlen) {
        ssize_t w = c_write(c, c->out + c->outoff, c->outlen - c->outoff);
        if (w > 0) {
            c->outoff += (size_t)w;
            continue;
        }
        if (w == -1) {
            set_ev(c, (c->outlen - c->outoff > OUT_HIGH ? 0 : EPOLLIN) | EPOLLOUT);
            return 0;
        }
        return -1;
    }
    c->outoff = c->outlen = 0;
    if (c->close_after_flush) {
        c->close_after_flush = 0;
        shutdown(c->fd, SHUT_WR);
        set_ev(c, EPOLLIN);
        return 1;
    }
    set_ev(c, EPOLLIN);
    return 0;
}

static void frame_header(conn *c, u8 b0, uint64_t n) {
    u8 h[10];
    size_t k = 0;
    h[k++] = b0;
    if (n < 126) h[k++] = (u8)n;
    else if (n < 65536) h[k++] = 126, h[k++] = (u8)(n >> 8), h[k++] = (u8)n;
    else {
        h[k++] = 127;
        for (int i = 7; i >= 0; i--) h[k++] = (u8)(n >> (8 * i));
    }
    out_append(c, h, k);
}

static int handshake(conn *c) {
    char *end = memmem(c->hs, (size_t)c->hslen, "\r\n\r\n", 4);
    if (!end) return c->hslen >= HS_MAX - 1 ? -1 : 0;
    size_t hl = (size_t)(end - c->hs) + 4;
    c->hs[hl - 2] = 0;
    char *key = NULL;
    int want_deflate = 0;
    for (char *l = strstr(c->hs, "\r\n"); l && *l; l = strstr(l, "\r\n")) {
        l += 2;
        if (!strncasecmp(l, "Sec-WebSocket-Key:", 18)) {
            key = l + 18;
            while (*key == ' ') key++;
        } else if (!strncasecmp(l, "Sec-WebSocket-Extensions:", 25)) {
            char *eol = strstr(l, "\r\n");
            if (memmem(l, eol ? (size_t)(eol - l) : strlen(l), "permessage-deflate", 18)) want_deflate = 1;
        }
    }
    if (!key) return -1;
    char k[128];
    size_t kl = 0;
    while (key[kl] && key[kl] != '\r' && key[kl] != ' ' && kl < 60) kl++;
    memcpy(k, key, kl);
    memcpy(k + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    u8 dg[20];
    sha1((u8 *)k, kl + 36, dg);
    char acc[40];
    b64(dg, 20, acc);
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                     acc, (want_deflate && deflate_ok) ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    out_append(c, (u8 *)resp, (size_t)n);
    c->upgraded = 1;
    return (int)hl;
}

static int ws_feed(conn *c, u8 *p, size_t n) {
    while (n > 0) {
        if (c->closing) return 0;
        if (!c->in_payload) {
            while (n > 0 && c->hlen < 2) c->hdr[c->hlen++] = *p++, n--;
            if (c->hlen < 2) return 0;
            if (!(c->hdr[1] & 0x80)) return -1; /* client frames must be masked */
            int l7 = c->hdr[1] & 0x7f;
            int need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
            while (n > 0 && c->hlen < need) c->hdr[c->hlen++] = *p++, n--;
            if (c->hlen < need) return 0;
            uint64_t len = (uint64_t)l7;
            if (l7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            else if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
            }
            memcpy(c->mask, c->hdr + need - 4, 4);
            c->op = c->hdr[0] & 0x0f;
            c->remain = len;
            c->pos = 0;
            c->hlen = 0;
            c->in_payload = 1;
            c->clen = 0;
            if (c->op >= 8 && len > 125) return -1;
            if (c->op < 8) frame_header(c, c->hdr[0], len); /* same FIN/RSV/opcode, unmasked */
        }
        size_t take = c->remain < n ? (size_t)c->remain : n;
        if (take) {
            /* unmask in place */
            size_t i = 0;
            unsigned off = (unsigned)(c->pos & 3);
            uint32_t m32;
            u8 rm[4];
            for (int j = 0; j < 4; j++) rm[j] = c->mask[(off + j) & 3];
            memcpy(&m32, rm, 4);
            uint64_t m64 = (uint64_t)m32 << 32 | m32;
            for (; i + 8 <= take; i += 8) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                v ^= m64;
                memcpy(p + i, &v, 8);
            }
            for (; i < take; i++) p[i] ^= rm[i & 3];
            if (c->op >= 8) {
                memcpy(c->cpay + c->clen, p, take);
                c->clen += (int)take;
            } else {
                out_put(c, p, take);
            }
            c->pos += take;
            c->remain -= take;
            p += take;
            n -= take;
        }
        if (c->remain == 0) {
            c->in_payload = 0;
            if (c->op == 0x9) {
                frame_header(c, 0x8A, (uint64_t)c->clen);
                out_append(c, c->cpay, (size_t)c->clen);
            } else if (c->op == 0x8) {
                frame_header(c, 0x88, (uint64_t)c->clen);
                out_append(c, c->cpay, (size_t)c->clen);
                c->closing = 1;
                c->close_after_flush = 1;
            }
        }
    }
    return 0;
}

static void on_event(conn *c, unsigned ev) {
    (void)ev;
#ifndef NO_TLS
    if (c->ssl && !c->tls_done) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) return set_ev(c, EPOLLIN);
            if (e == SSL_ERROR_WANT_WRITE) return set_ev(c, EPOLLIN | EPOLLOUT);
            ERR_clear_error();
            return conn_close(c);
        }
        c->tls_done = 1;
    }
#endif
    if (c->outoff < c->outlen) {
        int f = flush(c);
        if (f < 0) return conn_close(c);
        if (f > 0) {
            /* wait for the client's FIN (or drop if it is gone) */
        }
        if (c->outlen - c->outoff > OUT_HIGH) return;
    }
    for (int loops = 0; loops < 8; loops++) {
        ssize_t n = c_read(c, rbuf, RBUF);
        if (n == -1) break;
        if (n <= 0) return conn_close(c);
        if (c->closing) continue; /* discard after Close */
        if (!ws_mode) {
            out_put(c, rbuf, (size_t)n);
        } else if (!c->upgraded) {
            size_t room = (size_t)(HS_MAX - 1 - c->hslen);
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(c->hs + c->hslen, rbuf, take);
            c->hslen += (int)take;
            int hl = handshake(c);
            if (hl < 0) return conn_close(c);
            if (hl > 0 && c->hslen > hl) {
                if (ws_feed(c, (u8 *)c->hs + hl, (size_t)(c->hslen - hl)) < 0) return conn_close(c);
            }
            if (hl > 0 && take < (size_t)n) {
                if (ws_feed(c, rbuf + take, (size_t)n - take) < 0) return conn_close(c);
            }
        } else if (ws_feed(c, rbuf, (size_t)n) < 0) {
            return conn_close(c);
        }
        if (c->outlen - c->outoff > OUT_HIGH) break;
#ifndef NO_TLS
        if (c->ssl) {
            loops = 0; /* drain OpenSSL's buffer */
            continue;
        }
#endif
        if ((size_t)n < RBUF) break;
    }
    int f = flush(c);
    if (f < 0) return conn_close(c);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int port = 0;
    double max_seconds = 900;
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) ws_mode = !strcmp(argv[++i], "ws");
        else if (!strcmp(argv[i], "--tls") && i + 2 < argc) use_tls = 1, cert = argv[++i], key = argv[++i];
        else if (!strcmp(argv[i], "--deflate")) deflate_ok = 1;
        else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: echosrv --port P [--mode raw|ws] [--tls CERT KEY] [--deflate] [--max-seconds T]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
#ifndef NO_TLS
    if (use_tls) {
        ctx = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        /* read the socket in large chunks (as asyncio's SSL layer does), not record by record */
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "echosrv: cannot load certificate/key\n");
            return 2;
        }
    }
#else
    if (use_tls) {
        fprintf(stderr, "echosrv: built without OpenSSL\n");
        return 2;
    }
#endif
    rbuf = malloc(RBUF);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("echosrv: bind/listen");
        return 2;
    }
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    static int stdin_tag;
    struct epoll_event es = {.events = EPOLLIN, .data.ptr = &stdin_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &es);
    printf("READY %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    double deadline = now() + max_seconds;
    struct epoll_event evs[256];
    while (now() < deadline) {
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &stdin_tag) {
                char b[64];
                if (read(0, b, sizeof b) <= 0) return 0;
                continue;
            }
            if (!ptr) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *c = calloc(1, sizeof(conn));
                    c->fd = fd;
                    c->evmask = EPOLLIN;
#ifndef NO_TLS
                    if (use_tls) {
                        c->ssl = SSL_new(ctx);
                        SSL_set_fd(c->ssl, fd);
                        SSL_set_accept_state(c->ssl);
                    }
#endif
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            on_event((conn *)ptr, evs[i].events);
        }
    }
    return 0;
}
