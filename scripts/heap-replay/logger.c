/* LD_PRELOAD shim for scripts/heap-replay.sh: records every malloc, calloc, realloc,
 * posix_memalign / aligned_alloc / memalign and free of a process, with sizes and
 * addresses, to $HEAP_LOG_DIR/log.<pid> (32-byte records, see replay.c), then calls
 * glibc's own. Records are buffered and written with write(2): the shim allocates nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    uint8_t op; /* 1 malloc(a) = c, 2 free(a), 3 memalign(a, b) = c, 4 realloc(a, b) = c, 5 calloc(a) = c */
    uint8_t pad[7];
    uint64_t a, b, c;
} rec;

static void *(*r_malloc)(size_t);
static void (*r_free)(void *);
static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t);
static int (*r_posix_memalign)(void **, size_t, size_t);
static void *(*r_aligned_alloc)(size_t, size_t);
static void *(*r_memalign)(size_t, size_t);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static rec buf[4096];
static int nbuf, fd = -1, resolving;
static __thread int inside;
/* dlsym may allocate before the real functions are known: serve it from here. */
static char early[65536];
static size_t early_used;

static void flush(void) {
    if (fd >= 0 && nbuf) {
        ssize_t ignored = write(fd, buf, nbuf * sizeof(rec));
        (void)ignored;
    }
    nbuf = 0;
}

static void record(int op, uint64_t a, uint64_t b, uint64_t c) {
    if (inside) return;
    inside = 1;
    pthread_mutex_lock(&mu);
    if (fd < 0) {
        const char *dir = getenv("HEAP_LOG_DIR");
        char name[512];
        snprintf(name, sizeof name, "%s/log.%d", dir ? dir : "/tmp", (int)getpid());
        fd = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    }
    buf[nbuf] = (rec){.op = (uint8_t)op, .a = a, .b = b, .c = c};
    if (++nbuf == 4096) flush();
    pthread_mutex_unlock(&mu);
    inside = 0;
}

static void resolve(void) {
    if (r_malloc) return;
    resolving = 1;
    r_malloc = dlsym(RTLD_NEXT, "malloc");
    r_free = dlsym(RTLD_NEXT, "free");
    r_calloc = dlsym(RTLD_NEXT, "calloc");
    r_realloc = dlsym(RTLD_NEXT, "realloc");
    r_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    r_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    r_memalign = dlsym(RTLD_NEXT, "memalign");
    resolving = 0;
}

static void *early_alloc(size_t n) {
    void *p = early + early_used;
    early_used += (n + 15) & ~(size_t)15;
    return early_used <= sizeof early ? p : NULL;
}

static int is_early(void *p) { return (char *)p >= early && (char *)p < early + sizeof early; }

void *malloc(size_t n) {
    if (!r_malloc) {
        if (resolving) return early_alloc(n);
        resolve();
    }
    void *p = r_malloc(n);
    record(1, n, 0, (uint64_t)p);
    return p;
}

void *calloc(size_t k, size_t n) {
    if (!r_calloc) {
        if (resolving) return early_alloc(k * n); /* static: already zero */
        resolve();
    }
    void *p = r_calloc(k, n);
    record(5, k * n, 0, (uint64_t)p);
    return p;
}

void free(void *p) {
    if (!p || is_early(p)) return;
    resolve();
    record(2, (uint64_t)p, 0, 0);
    r_free(p);
}

void *realloc(void *old, size_t n) {
    resolve();
    void *p = r_realloc(old, n);
    record(4, (uint64_t)old, n, (uint64_t)p);
    return p;
}

int posix_memalign(void **out, size_t align, size_t n) {
    resolve();
    int r = r_posix_memalign(out, align, n);
    if (r == 0) record(3, align, n, (uint64_t)*out);
    return r;
}

void *aligned_alloc(size_t align, size_t n) {
    resolve();
    void *p = r_aligned_alloc(align, n);
    record(3, align, n, (uint64_t)p);
    return p;
}

void *memalign(size_t align, size_t n) {
    resolve();
    void *p = r_memalign(align, n);
    record(3, align, n, (uint64_t)p);
    return p;
}

/* exit(3) runs this: the memory bench's client exits with std::process::exit. */
__attribute__((destructor)) static void finish(void) {
    pthread_mutex_lock(&mu);
    flush();
    pthread_mutex_unlock(&mu);
}
