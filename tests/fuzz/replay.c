/* replay.c — run a fuzz target on files without libFuzzer: the kept findings
 * (tests/fuzz/regress/NAME/) and the seed corpora replayed as regression
 * tests by tests/cli/fuzz_regress.sh, in the ordinary (sanitized) build.
 *
 *   fuzz_replay_NAME FILE|DIR...
 *
 * Runs the target once per file (a directory: every file in it). A finding
 * that comes back crashes, or aborts under the sanitizers; otherwise the
 * program prints "replayed N inputs" and exits 0 (3 when a file cannot be
 * read). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: cannot read\n", path);
        free(buf);
        return -1;
    }
    /* a copy of exactly n bytes, so that reads past the input are caught */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact) memcpy(exact, buf, n);
    free(buf);
    if (!exact) return -1;
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    long count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            struct dirent **ents;
            int n = scandir(argv[i], &ents, NULL, alphasort);
            if (n < 0) {
                perror(argv[i]);
                rc = 3;
                continue;
            }
            for (int j = 0; j < n; j++) {
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[i], ents[j]->d_name);
                if (ents[j]->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
                    if (replay_file(p))
                        rc = 3;
                    else
                        count++;
                }
                free(ents[j]);
            }
            free(ents);
        } else if (replay_file(argv[i]))
            rc = 3;
        else
            count++;
    }
    printf("replayed %ld inputs\n", count);
    return rc;
}
