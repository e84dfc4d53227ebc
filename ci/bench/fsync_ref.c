/* The disk reference for the produce benchmark: sequential write() of
 * fixed-size blocks, each followed by fdatasync(), to a fresh file in DIR.
 * Prints one line: block size, total bytes, seconds, MB/s, syncs/s and the
 * p50/p99 of single write+fdatasync calls in microseconds.
 *
 *   fsync_ref DIR BLOCK_BYTES TOTAL_BYTES
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR BLOCK_BYTES TOTAL_BYTES\n", argv[0]);
        return 2;
    }
    size_t block = strtoull(argv[2], NULL, 10), total = strtoull(argv[3], NULL, 10);
    size_t n = total / block;
    if (block == 0 || n == 0) {
        fprintf(stderr, "block and total must be > 0 and total >= block\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_ref.%d", argv[1], (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "open %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *buf = malloc(block);
    double *lat = malloc(n * sizeof *lat);
    for (size_t i = 0; i < block; i++) buf[i] = (char)(i * 131 + 7);
    double start = now();
    for (size_t i = 0; i < n; i++) {
        double t = now();
        buf[0] = (char)i;
        for (size_t off = 0; off < block;) {
            ssize_t w = write(fd, buf + off, block - off);
            if (w < 0) {
                fprintf(stderr, "write: %s\n", strerror(errno));
                return 1;
            }
            off += (size_t)w;
        }
        if (fdatasync(fd) != 0) {
            fprintf(stderr, "fdatasync: %s\n", strerror(errno));
            return 1;
        }
        lat[i] = now() - t;
    }
    double secs = now() - start;
    close(fd);
    unlink(path);
    qsort(lat, n, sizeof *lat, cmp);
    printf("block=%zu bytes=%zu secs=%.3f MBps=%.1f syncs_per_s=%.0f p50_us=%.0f p99_us=%.0f\n", block, n * block,
           secs, n * block / secs / 1e6, n / secs, lat[n / 2] * 1e6, lat[(size_t)(n * 0.99)] * 1e6);
    return 0;
}
