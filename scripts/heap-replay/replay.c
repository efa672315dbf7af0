/* Replays a log written by logger.c against this process's glibc malloc, optionally with
 * some request sizes changed (FROM:TO; TO 0 leaves those blocks out), and prints how much the heap grew per connection:
 * the arena (what RSS sees: heap pages touched), what is in use, and what lies free inside
 * the arena (fragmentation, mostly around 128-byte aligned blocks).
 *
 * Usage: replay LOG N [FROM:TO ...]   (N: the connections the log's process made) */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    uint8_t op;
    uint8_t pad[7];
    uint64_t a, b, c;
} rec;

/* Open addressing from the logged address to the replayed one; 1 marks a freed slot. */
#define SLOTS (1u << 22)
static uint64_t *keys;
static void **vals;

static size_t slot_of(uint64_t k) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 42); }

static void put(uint64_t k, void *v) {
    size_t i = slot_of(k);
    while (keys[i] && keys[i] != 1 && keys[i] != k) i = (i + 1) & (SLOTS - 1);
    keys[i] = k;
    vals[i] = v;
}

static void *take(uint64_t k) {
    for (size_t i = slot_of(k); keys[i]; i = (i + 1) & (SLOTS - 1))
        if (keys[i] == k) {
            keys[i] = 1;
            return vals[i];
        }
    return NULL;
}

static size_t from[32], to[32];
static int nsub;

static size_t sized(uint64_t n) {
    for (int i = 0; i < nsub; i++)
        if (from[i] == n) return to[i];
    return (size_t)n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: replay LOG N [FROM:TO ...]\n");
        return 2;
    }
    double n = atof(argv[2]);
    for (int i = 3; i < argc && nsub < 32; i++)
        if (sscanf(argv[i], "%zu:%zu", &from[nsub], &to[nsub]) == 2) nsub++;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    rec *log = malloc(bytes);
    if (!log || fread(log, 1, bytes, f) != (size_t)bytes) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    keys = calloc(SLOTS, sizeof *keys);
    vals = calloc(SLOTS, sizeof *vals);
    struct mallinfo2 before = mallinfo2();
    for (long i = 0; i < bytes / (long)sizeof(rec); i++) {
        rec r = log[i];
        void *p = NULL;
        switch (r.op) {
        case 1:
            if (sized(r.a)) put(r.c, malloc(sized(r.a)));
            break;
        case 5:
            if (sized(r.a)) put(r.c, calloc(1, sized(r.a)));
            break;
        case 2: free(take(r.a)); break;
        case 3:
            if (sized(r.b) && posix_memalign(&p, r.a, sized(r.b)) == 0) put(r.c, p);
            break;
        case 4: put(r.c, realloc(r.a ? take(r.a) : NULL, sized(r.b))); break;
        }
    }
    struct mallinfo2 after = mallinfo2();
    printf("arena %+7.1f B/conn   in use %+7.1f   free inside the arena %6.1f   mmapped %+.1f\n",
           (after.arena - before.arena) / n, (after.uordblks - before.uordblks) / n,
           after.fordblks / n, (after.hblkhd - before.hblkhd) / n);
    return 0;
}
