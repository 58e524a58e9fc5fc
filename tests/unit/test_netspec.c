/* test_netspec.c — the network specification parser: built-ins, shapes,
 * and "file:line: message" errors for invalid specifications. */
#include "check.h"
#include "netspec.h"
#include <unistd.h>

static void t_builtin_lenet(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_builtin("lenet", &ns, &e) == DH_OK);
    CHECK(ns.in[0] == 1 && ns.in[1] == 28 && ns.in[2] == 28);
    CHECK(ns.zdim == 500);
    CHECK(strcmp(ns.zname, "z") == 0);
    CHECK(ns.layers[0].type == NS_CONV && strcmp(ns.layers[0].name, "conv1") == 0);
    CHECK(ns.layers[0].shape[0] == 20 && ns.layers[0].shape[1] == 24);
    CHECK(ns.layers[1].shape[1] == 12);
    CHECK(ns.layers[4].shape[0] == 50 && ns.layers[4].shape[1] == 4 && ns.layers[4].shape[2] == 4);
    /* conv1 20*25+20, conv2 50*20*25+50, fc 500*800+500 */
    CHECK(netspec_nparams(&ns) == 520 + 25050 + 400500);
    netspec_free(&ns);
}

static void t_builtin_cifar_fast(void) {
    netspec ns;
    dh_err e;
    REQUIRE(netspec_builtin("cifar", &ns, &e) == DH_OK);
    CHECK(ns.zdim == 1024);
    CHECK(ns.in[0] == 3 && ns.in[1] == 32);
    int found = 0;
    for (int i = 0; i < ns.nlayers; i++)
        if (ns.layers[i].type == NS_AVGPOOL && ns.layers[i].shape[1] == 4) found = 1;
    CHECK(found);
    netspec_free(&ns);
    REQUIRE(netspec_builtin("fast", &ns, &e) == DH_OK);
    CHECK(ns.zdim == 512);
    int nres = 0;
    for (int i = 0; i < ns.nlayers; i++)
        if (ns.layers[i].type == NS_RES) {
            nres++;
            CHECK(ns.layers[i].match > i && ns.layers[ns.layers[i].match].type == NS_END);
            CHECK(ns.layers[ns.layers[i].match].match == i);
        }
    CHECK(nres == 2);
    CHECK(strcmp(ns.layers[0].name, "prep") == 0 && !ns.layers[0].bias);
    netspec_free(&ns);
    CHECK(netspec_builtin("vgg", &ns, &e) == DH_EINVAL);
    CHECK(strstr(e.msg, "vgg") != NULL);
}

static void t_user_spec(void) {
    netspec ns;
    dh_err e;
    const char *s = "# comment line\n"
                    "\n"
                    "input 3 8 8   # trailing comment\n"
                    "conv 4 k3 s1 p1 name=first\n"
                    "bn\n"
                    "gelu\n"
                    "res\n"
                    "  conv 4 k3 p1\n"
                    "  relu\n"
                    "end\n"
                    "avgpool k2\n"
                    "gap\n"
                    "dropout 0.25\n"
                    "scale 0.5\n"
                    "fc 7 nobias\n"
                    "feature fc1\n";
    REQUIRE(netspec_parse(s, "t.net", &ns, &e) == DH_OK);
    CHECK(ns.zdim == 7);
    CHECK(strcmp(ns.zname, "fc1") == 0);
    CHECK(strcmp(ns.layers[0].name, "first") == 0);
    CHECK(strcmp(ns.layers[1].name, "bn1") == 0);
    CHECK(strcmp(ns.layers[4].name, "conv2") == 0);
    ns_layer *pool = &ns.layers[7];
    CHECK(pool->type == NS_AVGPOOL && pool->s == 2 && pool->shape[1] == 4);
    CHECK(ns.layers[8].type == NS_GAP && ns.layers[8].shape[1] == 1 && ns.layers[8].shape[0] == 4);
    CHECK_NEAR(ns.layers[9].f, 0.25, 1e-7);
    CHECK_NEAR(ns.layers[10].f, 0.5, 1e-7);
    CHECK(ns.layers[11].type == NS_FC && !ns.layers[11].bias && ns.layers[11].in[0] == 4);
    CHECK(strstr(ns.text, "# comment line") == ns.text);
    netspec_free(&ns);
}

/* Each invalid spec must fail with "t.net:LINE: ..." containing `frag`. */
static int bad(const char *spec, int line, const char *frag) {
    netspec ns;
    dh_err e;
    int rc = netspec_parse(spec, "t.net", &ns, &e);
    char pre[64];
    snprintf(pre, sizeof pre, "t.net:%d: ", line);
    if (rc != DH_EFORMAT || strncmp(e.msg, pre, strlen(pre)) != 0 || !strstr(e.msg, frag)) {
        printf("# unexpected: rc %d msg '%s' (wanted line %d, '%s')\n", rc, rc ? e.msg : "", line, frag);
        if (rc == DH_OK) netspec_free(&ns);
        return 0;
    }
    return 1;
}

static void t_errors(void) {
    CHECK(bad("input 1 8 8\nconvv 3 k3\nfeature\n", 2, "unknown statement 'convv'"));
    CHECK(bad("input 1 8 8\nconv 3x k3\nfeature\n", 2, "bad number '3x'"));
    CHECK(bad("input 1 8 8\nconv 3 k0\nfeature\n", 2, "bad number '0' for kernel size"));
    CHECK(bad("input 1 8 8\nconv 3\nfeature\n", 2, "missing kernel size"));
    CHECK(bad("conv 3 k3\nfeature\n", 1, "before 'input'"));
    CHECK(bad("# nothing\n", 2, "no 'input'"));
    CHECK(bad("", 1, "no 'input'"));
    CHECK(bad("input 1 8 8\nconv 3 k3\n", 3, "no 'feature'"));
    CHECK(bad("input 1 8\n", 1, "input: expected"));
    CHECK(bad("input 1 4 4\nconv 3 k5\nfeature\n", 2, "kernel 5 larger than the padded input 4"));
    CHECK(bad("input 1 4 4\nmaxpool k2\nmaxpool k2\nmaxpool k2\nfeature\n", 4, "larger than the padded input"));
    CHECK(bad("input 1 8 8\nres\nconv 2 k3 p1\nend\nfeature\n", 4, "changes the shape 1x8x8 to 2x8x8"));
    CHECK(bad("input 1 8 8\nres\nrelu\nfeature\n", 4, "feature inside a 'res'"));
    CHECK(bad("input 1 8 8\nres\nrelu\n", 2, "'res' without 'end'"));
    CHECK(bad("input 1 8 8\nend\nfeature\n", 2, "'end' without 'res'"));
    CHECK(bad("input 1 8 8\nfc 4\nfeature\nrelu\n", 4, "after 'feature'"));
    CHECK(bad("input 1 8 8\nfeature\n", 2, "no layers"));
    CHECK(bad("input 1 8 8\nfc 4 name=a\nfc 4 name=a\nfeature\n", 3, "duplicate layer name 'a'"));
    CHECK(bad("input 1 8 8\nfc 4 name=head\nfeature\n", 2, "reserved"));
    CHECK(bad("input 1 8 8\nfc 4 name=a\nfc 3\nfeature a\n", 4, "not the last layer with parameters"));
    CHECK(bad("input 1 8 8\nfc 4\nfeature zz\n", 3, "no layer named 'zz'"));
    CHECK(bad("input 1 8 8\ndropout 1.5\nfc 2\nfeature\n", 2, "dropout"));
    CHECK(bad("input 1 8 8\nrelu 3\nfeature\n", 2, "unexpected '3'"));
    CHECK(bad("input 1 8 8\nmaxpool k2 p2\nfeature\n", 2, "padding 2 more than half"));
    CHECK(bad("input 1 8 8\nfc 4 name=1a\nfeature\n", 2, "must start with a letter"));
    CHECK(bad("input 1 8 8\nconv 3 k3 q7\nfeature\n", 2, "unexpected 'q7'"));
    CHECK(bad("input 1 8 8\nfc 99999999\nfeature\n", 2, "bad number"));
    CHECK(bad("input 1024 8192 8192\n", 1, "too large"));
}

static void t_load(void) {
    netspec ns;
    dh_err e;
    CHECK(netspec_load("/nonexistent/x.net", &ns, &e) == DH_EIO);
    char path[] = "/tmp/test_netspec_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("input 1 4 4\nfc 3\nrelu\nfeature\n", f);
    fclose(f);
    CHECK(netspec_load(path, &ns, &e) == DH_OK);
    CHECK(ns.zdim == 3);
    netspec_free(&ns);
    f = fopen(path, "w");
    fputs("input 1 4 4\nfc 3\nbogus\n", f);
    fclose(f);
    CHECK(netspec_load(path, &ns, &e) == DH_EFORMAT);
    char want[128];
    snprintf(want, sizeof want, "%s:3: unknown statement 'bogus'", path);
    CHECKF(strcmp(e.msg, want) == 0, "got '%s'", e.msg);
    unlink(path);
}

/* Random mutations of the built-in texts: the parser either accepts (and
 * then the shapes are consistent) or reports file:line, never crashes. */
static void t_mutations(void) {
    const char *names[] = { "lenet", "cifar", "fast" };
    const char alphabet[] = "0123456789 kspnamebzfrl#=\n\t-.x";
    uint64_t st = 12345;
    int ok = 0, bad_ = 0;
    for (int it = 0; it < 3000; it++) {
        const char *src = netspec_builtin_text(names[it % 3]);
        size_t n = strlen(src);
        char *t = malloc(n + 8);
        REQUIRE(t);
        memcpy(t, src, n + 1);
        int muts = 1 + it % 4;
        for (int m = 0; m < muts; m++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (st >> 33) % n;
            int op = (st >> 20) % 3;
            char ch = alphabet[(st >> 40) % (sizeof alphabet - 1)];
            if (op == 0)
                t[pos] = ch; /* replace */
            else if (op == 1) {
                memmove(t + pos, t + pos + 1, n - pos);
                n--;
            } /* delete */
            else {
                t[pos] = 0;
                n = pos;
            } /* truncate */
            if (n == 0) break;
        }
        netspec ns;
        dh_err e;
        int rc = netspec_parse(t, "m", &ns, &e);
        if (rc == DH_OK) {
            ok++;
            CHECK(ns.zdim > 0 && ns.nlayers > 0);
            for (int i = 1; i < ns.nlayers; i++)
                CHECK(memcmp(ns.layers[i].in, ns.layers[i - 1].shape, sizeof ns.layers[i].in) == 0);
            netspec_free(&ns);
        } else {
            bad_++;
            CHECKF(strncmp(e.msg, "m:", 2) == 0, "message without file:line: %s", e.msg);
        }
        free(t);
    }
    printf("# mutations: %d accepted, %d rejected\n", ok, bad_);
}

int main(void) {
    RUN(t_builtin_lenet);
    RUN(t_builtin_cifar_fast);
    RUN(t_user_spec);
    RUN(t_errors);
    RUN(t_load);
    RUN(t_mutations);
    return check_done();
}
