/*
 * nfq_delay.c: a slow, lossy link in user space for the multi-node tests
 * (tests/multinode/slowlink.sh; docs/operations.md, "Multi-node tests on
 * one machine"). The kernel here has no netem qdisc and cannot load one, so
 * an nftables rule hands a node's incoming packets to NFQUEUE queue Q and
 * this program decides their fate:
 *
 *   nfq_delay --queue Q --delay-ms D --loss PCT --seed S
 *
 * Each packet is dropped with probability PCT/100 (a seeded RNG: the same
 * seed drops the same packet numbers), the others are accepted D ms after
 * they arrived. On SIGTERM or SIGINT the held packets are accepted at once
 * and one line of counts is printed:
 *   "nfq_delay: 1234 packets, 12 dropped (1.0 %), 50 ms delay, at most 17 held"
 *
 * Why these choices:
 *   1. Incoming side, not outgoing: delaying a node's own outgoing packets
 *      made steps 25x slower than the delay explains (issue 16; the local
 *      TCP stack's small queues and pacing interact with the hold), while
 *      a delay on the receiving side is what a slow link looks like.
 *   2. One thread, one FIFO: the delay is the same for every packet, so
 *      packets fall due in arrival order and a ring of (id, due time) is
 *      already sorted; verdicts are issued in order from the loop that
 *      reads the queue, so no lock exists and none can be forgotten. The
 *      loop sleeps in poll() until the next packet is due or one arrives.
 *   3. Only metadata is copied to user space (NFQNL_COPY_META): the verdict
 *      needs the packet id alone.
 *   4. The ring is larger than the kernel queue (--max-held): the kernel
 *      drops what does not fit there (counted by the kernel, not by us),
 *      so a full ring cannot happen while the queue length is below it.
 *
 * Invariants: every packet read from the queue gets exactly one verdict
 * (drop at once, or accept when due or at exit); ids leave the ring in the
 * order they entered.
 *
 * Test tool, not part of baton: it exits 2 on a usage error and 1 when the
 * queue cannot be bound (then the rule would swallow every packet: the
 * test starts this program first and checks that it is ready, the line
 * "nfq_delay: ready" on stderr, before installing the rule).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define RING_N 65536

typedef struct held {
  uint32_t id;
  int64_t due; /* CLOCK_MONOTONIC nanoseconds */
} held;

typedef struct delay_state {
  struct nfq_q_handle *pQ;
  int64_t delayNs;
  double loss;       /* probability in [0, 1] */
  uint64_t rngState; /* splitmix64 */
  held aRing[RING_N];
  int iHead, nHeld, nMaxHeld;
  long nPacket, nDrop, nRingFull;
} delay_state;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* splitmix64: the seed alone decides which packet numbers are dropped. */
static double rng_uniform(uint64_t *p) {
  uint64_t z = (*p += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

static void verdict(delay_state *s, uint32_t id, int v) {
  if (nfq_set_verdict(s->pQ, id, (uint32_t)v, 0, NULL) < 0)
    fprintf(stderr, "nfq_delay: verdict for packet %u failed: %s\n", id,
            strerror(errno));
}

/* Accepts the held packets due by tNow (all of them when tNow < 0). */
static void release_due(delay_state *s, int64_t tNow) {
  while (s->nHeld > 0 && (tNow < 0 || s->aRing[s->iHead].due <= tNow)) {
    verdict(s, s->aRing[s->iHead].id, NF_ACCEPT);
    s->iHead = (s->iHead + 1) % RING_N;
    s->nHeld--;
  }
}

static int on_packet(struct nfq_q_handle *pQ, struct nfgenmsg *pMsg,
                     struct nfq_data *pData, void *pArg) {
  (void)pQ;
  (void)pMsg;
  delay_state *s = pArg;
  struct nfqnl_msg_packet_hdr *pHdr = nfq_get_msg_packet_hdr(pData);
  if (!pHdr) return 0;
  uint32_t id = ntohl(pHdr->packet_id);
  s->nPacket++;
  if (rng_uniform(&s->rngState) < s->loss) {
    s->nDrop++;
    verdict(s, id, NF_DROP);
    return 0;
  }
  if (s->nHeld == RING_N) { /* cannot happen below the queue length (4.) */
    s->nRingFull++;
    verdict(s, id, NF_ACCEPT);
    return 0;
  }
  held *h = &s->aRing[(s->iHead + s->nHeld) % RING_N];
  h->id = id;
  h->due = now_ns() + s->delayNs;
  s->nHeld++;
  if (s->nHeld > s->nMaxHeld) s->nMaxHeld = s->nHeld;
  return 0;
}

static int parse_args(int argc, char **argv, int *pQueue, double *pDelayMs,
                      double *pLossPct, uint64_t *pSeed) {
  for (int i = 1; i < argc; i++) {
    const char *z = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "nfq_delay: %s needs a value\n", z);
      return -1;
    }
    char *zEnd;
    double v = strtod(argv[++i], &zEnd);
    if (*zEnd || v < 0) {
      fprintf(stderr, "nfq_delay: %s: not a number >= 0: '%s'\n", z, argv[i]);
      return -1;
    }
    if (!strcmp(z, "--queue")) *pQueue = (int)v;
    else if (!strcmp(z, "--delay-ms")) *pDelayMs = v;
    else if (!strcmp(z, "--loss")) *pLossPct = v;
    else if (!strcmp(z, "--seed")) *pSeed = (uint64_t)v;
    else {
      fprintf(stderr, "nfq_delay: unknown option '%s' (--queue Q "
                      "--delay-ms D --loss PCT --seed S)\n", z);
      return -1;
    }
  }
  if (*pLossPct > 100) {
    fprintf(stderr, "nfq_delay: --loss %g: a percentage <= 100\n", *pLossPct);
    return -1;
  }
  return 0;
}

/* Reads every message waiting on the queue's socket (non-blocking). */
static void drain(struct nfq_handle *pH, int fd) {
  char aBuf[65536] __attribute__((aligned));
  for (;;) {
    ssize_t n = recv(fd, aBuf, sizeof aBuf, MSG_DONTWAIT);
    if (n > 0) {
      nfq_handle_packet(pH, aBuf, (int)n);
      continue;
    }
    if (n < 0 && errno == ENOBUFS) {
      fprintf(stderr, "nfq_delay: netlink receive buffer overrun\n");
      continue;
    }
    return; /* EAGAIN (nothing left), EINTR (a signal) or closed */
  }
}

static void run_loop(delay_state *s, struct nfq_handle *pH, int fd) {
  while (!g_stop) {
    int timeoutMs = -1;
    if (s->nHeld > 0) {
      int64_t wait = s->aRing[s->iHead].due - now_ns();
      timeoutMs = wait <= 0 ? 0 : (int)((wait + 999999) / 1000000);
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, timeoutMs);
    release_due(s, now_ns());
    if (r > 0) drain(pH, fd);
  }
}

int main(int argc, char **argv) {
  int queue = 0;
  double delayMs = 50, lossPct = 0;
  uint64_t seed = 1;
  if (parse_args(argc, argv, &queue, &delayMs, &lossPct, &seed) != 0) return 2;
  static delay_state s;
  s.delayNs = (int64_t)(delayMs * 1e6);
  s.loss = lossPct / 100.0;
  s.rngState = seed;
  struct nfq_handle *pH = nfq_open();
  if (!pH) {
    fprintf(stderr, "nfq_delay: nfq_open failed: %s\n", strerror(errno));
    return 1;
  }
  s.pQ = nfq_create_queue(pH, (uint16_t)queue, on_packet, &s);
  if (!s.pQ || nfq_set_mode(s.pQ, NFQNL_COPY_META, 0) < 0) {
    fprintf(stderr, "nfq_delay: cannot bind NFQUEUE %d: %s\n", queue,
            strerror(errno));
    nfq_close(pH);
    return 1;
  }
  nfq_set_queue_maxlen(s.pQ, RING_N / 2);
  int fd = nfq_fd(pH);
  int one = 1, rcv = 8 << 20;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  fprintf(stderr, "nfq_delay: ready (queue %d, %g ms, %g %% loss, seed %llu)\n",
          queue, delayMs, lossPct, (unsigned long long)seed);
  run_loop(&s, pH, fd);
  release_due(&s, -1);
  printf("nfq_delay: %ld packets, %ld dropped (%.1f %%), %g ms delay, at "
         "most %d held%s\n",
         s.nPacket, s.nDrop, s.nPacket ? 100.0 * s.nDrop / s.nPacket : 0.0,
         delayMs, s.nMaxHeld, s.nRingFull ? " (ring full: some not delayed)"
                                          : "");
  fflush(stdout);
  nfq_destroy_queue(s.pQ);
  nfq_close(pH);
  return 0;
}
