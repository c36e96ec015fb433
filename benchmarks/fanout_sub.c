/*
 * fanout_sub.c - fan-out load for benchmarks/bench_fanout.py: N WebSocket subscribers and
 * one publisher, single thread, epoll.  Built at bench time into benchmarks/out/:
 *
 *   cc -O2 -o benchmarks/out/fanout_sub benchmarks/fanout_sub.c
 *
 * 1. Opens --conns subscriber connections to ws://HOST:PORT/sub (--concurrency handshakes in
 *    flight; source addresses 127.0.0.2 ... 127.0.0.(1+--src-ips) in turn, so that 50,000
 *    connections fit in the ephemeral port range), checks the 101 and Sec-WebSocket-Accept,
 *    and counts a subscriber as ready when the server's first frame (a "hello", sent once the
 *    server has registered it) arrives.
 * 2. Opens one publisher connection to ws://HOST:PUB_PORT/pub and publishes binary messages
 *    of --size bytes: [0,8) sequence number, [8,16) CLOCK_MONOTONIC ns at the send() of the
 *    publish frame, then padding.  At most --window messages are outstanding: message k+W is
 *    published when message k has reached every subscriber ("as fast as every subscriber
 *    receives everything").  The server re-broadcasts the payload unchanged.
 * 3. Every subscriber frame: latency = now - payload time (same clock, same machine), per
 *    connection order checked (gaps counted).  After --warmup s, counts deliveries, completed
 *    messages and latencies for --duration s, reads the server's CPU (utime+stime from
 *    /proc/PID/stat, --server-pid) and its own (getrusage) at both ends of the window, then
 *    stops publishing, waits for the outstanding messages, prints one JSON line and resets
 *    every connection (RST: no TIME_WAIT left behind).
 *
 * Pings from the server are answered (masked Pong).  A message that has not reached every
 * subscriber --stall seconds after its publication ends the run with an error.
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

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

typedef unsigned char u8;
enum { S_FREE, S_CONNECTING, S_SEND_REQ, S_READ_RESP, S_WAIT_HELLO, S_OPEN, S_DEAD };

#define HS_MAX 2048
#define OUT_MAX 4096
#define RING 4096
#define RBUF (64 * 1024)

static const char *WS_KEY = "dGhlIHNhbXBsZSBub25jZQ==";
static const char *WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static struct {
    const char *host;
    int port, pub_port;
    int conns, src_ips, concurrency, window;
    int size;
    double warmup, duration, timeout, stall;
    int server_pid;
    int coalesce_us;
} cfg = {"127.0.0.1", 0, 0, 1000, 8, 100, 2, 64, 1.0, 3.0, 120.0, 5.0, 0, 0};

typedef struct conn {
    int fd, idx, state, is_pub;
    unsigned evmask;
    char hs[HS_MAX];
    int hslen, hsoff;
    u8 out[OUT_MAX];
    int outlen, outoff;
    /* frame parser */
    u8 hdr[10];
    int hlen, in_payload;
    uint64_t remain, plen;
    u8 op;
    u8 pay[128];
    int paylen;
    int64_t last_seq;
} conn;

typedef struct {
    int64_t seq;
    uint64_t t_pub;
    int remaining;
} slot;

static struct {
    int ep;
    conn *c;
    conn pub;
    int nopen, nfailed, started, inprog;
    u8 *rbuf;
    slot ring[RING];
    int64_t next_seq, oldest; /* oldest: first message not yet fully delivered */
    int outstanding, publishing, measuring, done_window;
    double t0, t_open, t_run, t_ws, t_we, t_meas0, t_meas1;
    uint64_t deliveries, completed, published_win, gaps, dups, errors, pongs;
    uint64_t deliveries_all, completed_all;
    char errmsg[256];
    struct rusage ru0, ru1;
    long srv0, srv1, srvu0, srvu1;
    long long srvwait0, srvwait1, wait0, wait1;
    uint64_t hist[64 * 16];
    uint64_t hist_n;
    uint64_t lat_sum_ns, lat_max_ns;
    u8 pubframe[256];
    int pubframelen;
} g;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static double now(void) { return now_ns() * 1e-9; }

static void set_err(const char *msg) {
    g.errors++;
    if (!g.errmsg[0]) snprintf(g.errmsg, sizeof g.errmsg, "%s", msg);
}

static void hist_add(uint64_t v) {
    int idx;
    if (v < 16) idx = (int)v;
    else {
        int msb = 63 - __builtin_clzll(v);
        idx = (msb << 4) | (int)((v >> (msb - 4)) & 15);
    }
    if (idx >= 64 * 16) idx = 64 * 16 - 1;
    g.hist[idx]++;
    g.hist_n++;
    g.lat_sum_ns += v;
    if (v > g.lat_max_ns) g.lat_max_ns = v;
}

static double hist_pct(double p) { /* microseconds */
    if (!g.hist_n) return 0;
    uint64_t target = (uint64_t)(p * g.hist_n), acc = 0;
    for (int i = 0; i < 64 * 16; i++) {
        acc += g.hist[i];
        if (acc > target) {
            if (i < 16) return i / 1000.0;
            int msb = i >> 4, sub = i & 15;
            return (double)(((uint64_t)(16 + sub)) << (msb - 4)) / 1000.0;
        }
    }
    return 0;
}

static long proc_cpu_ticks(int pid, long *user) {
    if (pid <= 0) return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2;
    /* fields after ')': state(3) ... utime(14) stime(15): skip 11 fields */
    for (int i = 0; i < 11 && p; i++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (!p) return -1;
    long ut = 0, st = 0;
    if (sscanf(p, "%ld %ld", &ut, &st) != 2) return -1;
    *user = ut;
    return ut + st;
}

static long long schedstat_wait(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long a = 0, b = 0;
    int k = fscanf(f, "%lld %lld", &a, &b);
    fclose(f);
    return k == 2 ? b : -1;
}

static long long server_wait(void) {
    char path[64];
    if (cfg.server_pid <= 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/schedstat", cfg.server_pid);
    return schedstat_wait(path);
}

static void set_events(conn *c, unsigned ev) {
    if (c->fd < 0 || ev == c->evmask) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &e);
    c->evmask = ev;
}

static void kill_conn(conn *c, const char *why) {
    if (c->fd >= 0) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd);
        c->fd = -1;
    }
    if (why) {
        char m[200];
        snprintf(m, sizeof m, "%s %d: %s", c->is_pub ? "publisher" : "subscriber", c->idx, why);
        set_err(m);
    }
    if (!c->is_pub && (c->state < S_OPEN)) {
        g.nfailed++;
        g.inprog--;
    }
    c->state = S_DEAD;
}

static int flush_out(conn *c) {
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w > 0) {
            c->outoff += (int)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        return -1;
    }
    c->outoff = c->outlen = 0;
    set_events(c, EPOLLIN);
    return 0;
}

static void queue_out(conn *c, const u8 *p, int n) {
    if (c->outoff > 0 && c->outoff == c->outlen) c->outoff = c->outlen = 0;
    if (c->outlen + n > OUT_MAX) {
        if (c->outoff > 0) {
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        if (c->outlen + n > OUT_MAX) {
            set_err("output buffer full");
            return;
        }
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void start_conn(conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = S_CONNECTING;
        g.inprog++;
        kill_conn(c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!c->is_pub && cfg.src_ips > 0) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)(c->idx % cfg.src_ips));
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            c->state = S_CONNECTING;
            g.inprog++;
            kill_conn(c, "bind to the source address failed");
            return;
        }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(c->is_pub ? cfg.pub_port : cfg.port)};
    inet_pton(AF_INET, cfg.host, &a.sin_addr);
    c->state = S_CONNECTING;
    if (!c->is_pub) g.inprog++;
    c->hlen = 0;
    c->in_payload = 0;
    c->last_seq = -1;
    c->outlen = c->outoff = 0;
    int r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno != EINPROGRESS) {
        kill_conn(c, strerror(errno));
        return;
    }
    c->hslen = snprintf(c->hs, HS_MAX,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                        c->is_pub ? "/pub" : "/sub", cfg.host, c->is_pub ? cfg.pub_port : cfg.port, WS_KEY);
    c->hsoff = 0;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    c->evmask = EPOLLOUT;
    epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &e);
}

static void became_open(conn *c) {
    c->state = S_OPEN;
    if (!c->is_pub) {
        g.nopen++;
        g.inprog--;
    }
}

/* ---- publishing ---- */
static const u8 MASK[4] = {0x5a, 0xa5, 0x3c, 0xc3};

static void publish_one(void) {
    int64_t seq = g.next_seq++;
    slot *s = &g.ring[seq % RING];
    s->seq = seq;
    s->remaining = g.nopen;
    u8 pay[256];
    memset(pay, 'x', sizeof pay);
    uint64_t t = now_ns();
    memcpy(pay, &seq, 8);
    memcpy(pay + 8, &t, 8);
    s->t_pub = t;
    int n = cfg.size, h = 0;
    u8 *f = g.pubframe;
    f[h++] = 0x82;
    if (n < 126) f[h++] = 0x80 | (u8)n;
    else {
        f[h++] = 0x80 | 126;
        f[h++] = (u8)(n >> 8);
        f[h++] = (u8)n;
    }
    memcpy(f + h, MASK, 4);
    h += 4;
    for (int i = 0; i < n; i++) f[h + i] = pay[i] ^ MASK[i & 3];
    queue_out(&g.pub, f, h + n);
    g.outstanding++;
    if (g.measuring) g.published_win++;
    if (flush_out(&g.pub) < 0) kill_conn(&g.pub, "publish failed");
}

static void pump(void) {
    while (g.publishing && g.pub.state == S_OPEN && g.outstanding < cfg.window) publish_one();
}

static void delivered(conn *c, const u8 *p, uint64_t plen, uint64_t t_recv) {
    if (plen < 16) {
        set_err("unexpected short data frame");
        return;
    }
    int64_t seq;
    uint64_t t;
    memcpy(&seq, p, 8);
    memcpy(&t, p + 8, 8);
    if (c->last_seq >= 0 && seq != c->last_seq + 1) {
        if (seq <= c->last_seq) g.dups++;
        else g.gaps += (uint64_t)(seq - c->last_seq - 1);
    }
    c->last_seq = seq;
    g.deliveries_all++;
    if (g.measuring) {
        g.deliveries++;
        hist_add(t_recv - t);
    }
    slot *s = &g.ring[seq % RING];
    if (s->seq != seq || seq >= g.next_seq) return;
    if (--s->remaining == 0) {
        g.outstanding--;
        g.completed_all++;
        if (g.measuring) g.completed++;
        while (g.oldest < g.next_seq && g.ring[g.oldest % RING].remaining == 0) g.oldest++;
        pump();
    }
}

/* ---- reading frames ---- */
static void on_frame_end(conn *c, uint64_t t_recv) {
    u8 op = c->op;
    if (op == 0x9) { /* Ping -> Pong, masked */
        u8 f[2 + 4 + 125];
        int n = c->paylen, h = 0;
        f[h++] = 0x8A;
        f[h++] = 0x80 | (u8)n;
        memcpy(f + h, MASK, 4);
        h += 4;
        for (int i = 0; i < n; i++) f[h + i] = c->pay[i] ^ MASK[i & 3];
        queue_out(c, f, h + n);
        if (flush_out(c) < 0) kill_conn(c, "write failed");
        g.pongs++;
        return;
    }
    if (op == 0xA) return;
    if (op == 0x8) {
        kill_conn(c, "server sent Close");
        return;
    }
    if (c->is_pub) return;
    if (c->state == S_WAIT_HELLO) {
        became_open(c);
        return;
    }
    delivered(c, c->pay, c->plen, t_recv);
}

static void parse(conn *c, const u8 *b, size_t n, uint64_t t_recv) {
    size_t i = 0;
    while (i < n && c->fd >= 0) {
        if (!c->in_payload) {
            c->hdr[c->hlen++] = b[i++];
            if (c->hlen < 2) continue;
            u8 l7 = c->hdr[1] & 0x7f;
            int need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            if (c->hdr[1] & 0x80) {
                kill_conn(c, "masked server frame");
                return;
            }
            if (c->hlen < need) continue;
            uint64_t len = l7;
            if (l7 == 126) len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            else if (l7 == 127) {
                len = 0;
                for (int k = 0; k < 8; k++) len = (len << 8) | c->hdr[2 + k];
            }
            c->op = c->hdr[0] & 0x0f;
            c->plen = c->remain = len;
            c->paylen = 0;
            c->hlen = 0;
            c->in_payload = 1;
        }
        size_t take = n - i < c->remain ? n - i : (size_t)c->remain;
        if (c->paylen < (int)sizeof c->pay) {
            size_t room = sizeof c->pay - c->paylen;
            size_t k = take < room ? take : room;
            memcpy(c->pay + c->paylen, b + i, k);
            c->paylen += (int)k;
        }
        i += take;
        c->remain -= take;
        if (c->remain == 0) {
            c->in_payload = 0;
            on_frame_end(c, t_recv);
        }
    }
}

static void on_readable(conn *c) {
    for (;;) {
        ssize_t r = recv(c->fd, g.rbuf, RBUF, 0);
        if (r > 0) {
            uint64_t t = now_ns();
            if (c->state == S_READ_RESP) {
                int room = HS_MAX - 1 - c->hslen;
                int k = r < room ? (int)r : room;
                memcpy(c->hs + c->hslen, g.rbuf, k);
                c->hslen += k;
                c->hs[c->hslen] = 0;
                char *end = strstr(c->hs, "\r\n\r\n");
                if (!end) {
                    if (c->hslen >= HS_MAX - 1) {
                        kill_conn(c, "handshake response too long");
                        return;
                    }
                    continue;
                }
                if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
                    char m[120];
                    snprintf(m, sizeof m, "no 101: %.60s", c->hs);
                    for (char *q = m; *q; q++)
                        if (*q == '\r' || *q == '\n' || *q == '"') *q = ' ';
                    kill_conn(c, m);
                    return;
                }
                if (!strcasestr(c->hs, WS_ACCEPT)) {
                    kill_conn(c, "bad Sec-WebSocket-Accept");
                    return;
                }
                size_t hdrlen = (size_t)(end + 4 - c->hs);
                size_t prev = (size_t)(c->hslen - k); /* head bytes from earlier reads */
                if (c->is_pub) c->state = S_OPEN;
                else c->state = S_WAIT_HELLO;
                /* frames that came in this read after the head (read from g.rbuf) */
                size_t off = hdrlen - prev;
                if ((size_t)r > off) parse(c, g.rbuf + off, (size_t)r - off, t);
                if (c->fd < 0) return;
                continue;
            }
            parse(c, g.rbuf, (size_t)r, t);
            if (c->fd < 0) return;
            if (r < RBUF) return;
            continue;
        }
        if (r == 0) {
            kill_conn(c, "server closed the connection");
            return;
        }
        if (errno == EAGAIN || errno == EINTR) return;
        kill_conn(c, strerror(errno));
        return;
    }
}

static void advance(conn *c, unsigned ev) {
    if (ev & (EPOLLERR | EPOLLHUP) && c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        kill_conn(c, err ? strerror(err) : "connect failed");
        return;
    }
    if (c->state == S_CONNECTING && (ev & EPOLLOUT)) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            kill_conn(c, strerror(err));
            return;
        }
        c->state = S_SEND_REQ;
    }
    if (c->state == S_SEND_REQ) {
        while (c->hsoff < c->hslen) {
            ssize_t w = send(c->fd, c->hs + c->hsoff, c->hslen - c->hsoff, MSG_NOSIGNAL);
            if (w > 0) c->hsoff += (int)w;
            else if (w < 0 && errno == EAGAIN) return;
            else {
                kill_conn(c, "handshake write failed");
                return;
            }
        }
        c->state = S_READ_RESP;
        c->hslen = 0;
        set_events(c, EPOLLIN);
        return;
    }
    if (ev & EPOLLIN) on_readable(c);
    if (c->fd >= 0 && (ev & EPOLLOUT) && c->outlen > c->outoff) {
        if (flush_out(c) < 0) kill_conn(c, "write failed");
    }
    if (c->fd >= 0 && (ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLIN)) kill_conn(c, "connection error");
}

static void usage(void) {
    fprintf(stderr,
            "usage: fanout_sub --port P [--pub-port P] [--host H] [--conns N] [--src-ips K]\n"
            "  [--concurrency C] [--window W] [--size S] [--warmup S] [--duration S]\n"
            "  [--timeout S] [--stall S] [--server-pid PID]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--host")) cfg.host = v;
        else if (!strcmp(a, "--port")) cfg.port = atoi(v);
        else if (!strcmp(a, "--pub-port")) cfg.pub_port = atoi(v);
        else if (!strcmp(a, "--conns")) cfg.conns = atoi(v);
        else if (!strcmp(a, "--src-ips")) cfg.src_ips = atoi(v);
        else if (!strcmp(a, "--concurrency")) cfg.concurrency = atoi(v);
        else if (!strcmp(a, "--window")) cfg.window = atoi(v);
        else if (!strcmp(a, "--size")) cfg.size = atoi(v);
        else if (!strcmp(a, "--warmup")) cfg.warmup = atof(v);
        else if (!strcmp(a, "--duration")) cfg.duration = atof(v);
        else if (!strcmp(a, "--timeout")) cfg.timeout = atof(v);
        else if (!strcmp(a, "--stall")) cfg.stall = atof(v);
        else if (!strcmp(a, "--server-pid")) cfg.server_pid = atoi(v);
        else if (!strcmp(a, "--coalesce-us")) cfg.coalesce_us = atoi(v);
        else usage();
        i++;
    }
    if (!cfg.port) usage();
    if (!cfg.pub_port) cfg.pub_port = cfg.port;
    if (cfg.size < 16) cfg.size = 16;
    if (cfg.size > 200) cfg.size = 200;
    if (cfg.window < 1) cfg.window = 1;
    if (cfg.window > RING / 2) cfg.window = RING / 2;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)cfg.conns + 1000;
        if (rl.rlim_max < want) rl.rlim_max = want; /* root may raise it */
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            getrlimit(RLIMIT_NOFILE, &rl);
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    g.rbuf = malloc(RBUF);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.c = calloc((size_t)cfg.conns, sizeof(conn));
    for (int i = 0; i < cfg.conns; i++) {
        g.c[i].fd = -1;
        g.c[i].idx = i;
    }
    g.pub.fd = -1;
    g.pub.is_pub = 1;
    for (int i = 0; i < RING; i++) g.ring[i].seq = -1;

    g.t0 = now();
    int next = 0;
    int phase = 0; /* 0 opening subscribers, 1 opening publisher, 2 running, 3 draining */
    double deadline = g.t0 + cfg.timeout, drain_deadline = 0;
    struct epoll_event evs[1024];
    for (;;) {
        double t = now();
        if (phase == 0) {
            while (next < cfg.conns && g.inprog < cfg.concurrency) start_conn(&g.c[next++]);
            if (g.nfailed) break;
            if (g.nopen == cfg.conns) {
                g.t_open = t - g.t0;
                phase = 1;
                start_conn(&g.pub);
            } else if (t > deadline) {
                set_err("could not open all subscriber connections in time");
                break;
            }
        }
        if (phase == 1) {
            if (g.pub.state == S_DEAD) break;
            if (g.pub.state == S_OPEN) {
                phase = 2;
                g.t_run = t;
                g.t_ws = t + cfg.warmup;
                g.t_we = g.t_ws + cfg.duration;
                g.publishing = 1;
                pump();
            } else if (t > deadline + 10) {
                set_err("publisher did not open");
                break;
            }
        }
        if (phase == 2) {
            if (!g.measuring && !g.done_window && t >= g.t_ws) {
                g.measuring = 1;
                g.t_meas0 = t;
                getrusage(RUSAGE_SELF, &g.ru0);
                g.srv0 = proc_cpu_ticks(cfg.server_pid, &g.srvu0);
                g.srvwait0 = server_wait();
                g.wait0 = schedstat_wait("/proc/thread-self/schedstat");
            }
            if (g.measuring && t >= g.t_we) {
                g.measuring = 0;
                g.done_window = 1;
                g.t_meas1 = t;
                getrusage(RUSAGE_SELF, &g.ru1);
                g.srv1 = proc_cpu_ticks(cfg.server_pid, &g.srvu1);
                g.srvwait1 = server_wait();
                g.wait1 = schedstat_wait("/proc/thread-self/schedstat");
                g.publishing = 0;
                phase = 3;
                drain_deadline = t + 3.0;
            }
        }
        if (phase == 3 && (g.outstanding == 0 || t > drain_deadline)) break;
        if (phase >= 2 && g.outstanding > 0 && g.oldest < g.next_seq) {
            slot *s = &g.ring[g.oldest % RING];
            if (s->seq == g.oldest && s->remaining > 0 && t - s->t_pub * 1e-9 > cfg.stall) {
                char m[160];
                snprintf(m, sizeof m, "stall: message %lld reached %d of %d subscribers in %.1f s",
                         (long long)g.oldest, g.nopen - s->remaining, g.nopen, cfg.stall);
                set_err(m);
                break;
            }
        }
        if (phase >= 2 && g.pub.state == S_DEAD) break;
        if (t > g.t0 + cfg.timeout + cfg.warmup + cfg.duration + 30) {
            set_err("hard deadline");
            break;
        }
        int timeout_ms = 50;
        int n = epoll_wait(g.ep, evs, 1024, timeout_ms);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            advance(c, evs[i].events);
        }
        /* Receive-side coalescing (like a NIC's interrupt moderation): while publishing, nap
           between polls so that the server's sends find the generator not waiting in
           epoll_wait and need not wake it (a cross-core wake-up per send otherwise). */
        if (cfg.coalesce_us > 0 && phase >= 2 && n < 1024) {
            struct timespec ts = {0, (long)cfg.coalesce_us * 1000};
            nanosleep(&ts, NULL);
        }
    }
    double window = g.t_meas1 > 0 ? g.t_meas1 - g.t_meas0 : 0;
    double cpu = window > 0 ? (g.ru1.ru_utime.tv_sec - g.ru0.ru_utime.tv_sec) +
                                  (g.ru1.ru_utime.tv_usec - g.ru0.ru_utime.tv_usec) * 1e-6 +
                                  (g.ru1.ru_stime.tv_sec - g.ru0.ru_stime.tv_sec) +
                                  (g.ru1.ru_stime.tv_usec - g.ru0.ru_stime.tv_usec) * 1e-6
                            : 0;
    long tck = sysconf(_SC_CLK_TCK);
    double srv_cpu = (g.srv0 >= 0 && g.srv1 >= 0 && window > 0) ? (double)(g.srv1 - g.srv0) / tck : -1;
    double srv_user = (g.srv0 >= 0 && g.srv1 >= 0 && window > 0) ? (double)(g.srvu1 - g.srvu0) / tck : -1;
    double srv_wait = (g.srvwait0 >= 0 && g.srvwait1 >= 0 && window > 0) ? (g.srvwait1 - g.srvwait0) * 1e-9 : -1;
    double own_wait = (g.wait0 >= 0 && g.wait1 >= 0 && window > 0) ? (g.wait1 - g.wait0) * 1e-9 : -1;
    if (window > 0 && g.deliveries == 0) set_err("no delivery in the measurement window");
    printf("{\"conns\": %d, \"opened\": %d, \"open_s\": %.3f, \"window_s\": %.4f, "
           "\"deliveries\": %llu, \"completed\": %llu, \"published\": %llu, "
           "\"deliveries_per_s\": %.1f, \"messages_per_s\": %.2f, "
           "\"lat_p50_us\": %.1f, \"lat_p90_us\": %.1f, \"lat_p99_us\": %.1f, \"lat_max_us\": %.1f, "
           "\"lat_mean_us\": %.1f, \"server_cpu_s\": %.3f, \"server_user_s\": %.3f, \"server_wait_s\": %.3f, "
           "\"gen_cpu_s\": %.3f, \"gen_wait_s\": %.3f, \"gaps\": %llu, \"dups\": %llu, \"pongs\": %llu, "
           "\"outstanding_at_end\": %d, \"errors\": %llu, \"error\": \"%s\"}\n",
           cfg.conns, g.nopen, g.t_open, window, (unsigned long long)g.deliveries,
           (unsigned long long)g.completed, (unsigned long long)g.published_win,
           window > 0 ? g.deliveries / window : 0, window > 0 ? g.completed / window : 0, hist_pct(0.50),
           hist_pct(0.90), hist_pct(0.99), g.lat_max_ns / 1000.0,
           g.hist_n ? g.lat_sum_ns / 1000.0 / g.hist_n : 0, srv_cpu, srv_user, srv_wait, cpu, own_wait,
           (unsigned long long)g.gaps, (unsigned long long)g.dups, (unsigned long long)g.pongs, g.outstanding,
           (unsigned long long)g.errors, g.errmsg);
    fflush(stdout);
    /* reset everything: no TIME_WAIT, no closing handshakes to wait for */
    for (int i = 0; i < cfg.conns; i++)
        if (g.c[i].fd >= 0) {
            struct linger lg = {1, 0};
            setsockopt(g.c[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(g.c[i].fd);
        }
    if (g.pub.fd >= 0) close(g.pub.fd);
    return g.errors ? 1 : 0;
}
