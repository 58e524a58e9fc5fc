#!/usr/bin/env bash
# make install: the programs, the libraries, the man pages (deephash(7)
# among them) and the public headers only (none of the rooms' internal
# ones); every installed header compiles on its own, and a small program
# builds against the installed tree through pkg-config and runs.
# Installs the build under test ($DH_TESTS/..) into a scratch DESTDIR; skips
# rather than build anything (the build must be up to date).
. "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${DH_TESTS:=build/rel/tests}"
bd=$(cd "$DH_TESTS/.." 2>/dev/null && pwd) || { t_skip install "no build directory"; exit 0; }
case $bd in "$root"/*) bd=${bd#"$root"/};; *) t_skip install "build $bd is not in $root"; exit 0;; esac
v=rel; san=""
if [ -f "$bd/lib/libdeephash.a" ] && nm "$bd/lib/libdeephash.a" 2>/dev/null | grep -q __asan_; then v=san; san="-fsanitize=address,undefined"; fi
command -v pkg-config > /dev/null || { t_skip install "pkg-config missing"; exit 0; }
mk=(make -C "$root" --no-print-directory V=$v BUILDDIR="$bd" DESTDIR="$TMP/inst" PREFIX=/usr)
if "${mk[@]}" -n install 2>/dev/null | grep -qE '^(cc|gcc|clang|nvcc|ar) '; then
  t_skip install "$bd is not up to date (make install would build)"; exit 0
fi

t_begin "install"
"${mk[@]}" install > "$TMP/log" 2>&1 || t_fail "make install: $(tail -3 "$TMP/log")"
I=$TMP/inst/usr
for f in bin/dh-encode bin/dh-info lib/libdeephash.a lib/libdhprog.a lib/pkgconfig/deephash.pc \
         include/deephash/dhs.h include/deephash/dh_prog.h include/deephash/dh_opts.h share/man/man7/deephash.7; do
  [ -e "$I/$f" ] || t_fail "$f not installed"
done
t_end

t_begin "install_public_headers_only"
for h in dk_impl.h dk_elem.h dk_dnnl.h dhs_internal.h hash_linalg.h dh_cuda.h; do
  [ ! -e "$I/include/deephash/$h" ] || t_fail "internal header $h installed"
done
for h in "$I"/include/deephash/*.h; do # each on its own, with the installed headers only
  echo "#include \"$(basename "$h")\"" | cc -std=gnu11 -fsyntax-only -I"$I/include/deephash" -x c - 2> "$TMP/e" ||
    t_fail "$(basename "$h") does not compile on its own: $(head -1 "$TMP/e")"
done
t_end

t_begin "install_pkg_config_program"
cat > "$TMP/tiny.c" << 'EOF'
#include <stdio.h>
#include "dh_prog.h"
#include "dhs.h"
int main(int argc, char **argv) { /* kind and rows of a stream */
    dh_prog_init("tiny", argc, argv);
    dh_err e;
    dhs_reader *r = dhs_open_path(argc > 1 ? argv[1] : NULL, NULL, &e);
    if (!r) dh_die_err(&e, NULL);
    dhs_chunk *c;
    int rc;
    while ((rc = dhs_read_chunk(r, &c, &e)) == DH_OK) continue;
    if (rc != DH_EOF) dh_die_err(&e, NULL);
    printf("%s %lld\n", dhs_reader_schema(r)->kind, (long long)dhs_reader_rows(r));
    dhs_close(r);
    return 0;
}
EOF
export PKG_CONFIG_PATH=$I/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$TMP/inst
# shellcheck disable=SC2046,SC2086
cc -std=gnu11 -Wall $san $(pkg-config --cflags deephash) "$TMP/tiny.c" $(pkg-config --static --libs deephash) \
  -o "$TMP/tiny" 2> "$TMP/e" || t_fail "does not build: $(head -3 "$TMP/e")"
npy_header '<f4' '(4, 2)' > "$TMP/x.npy"; head -c 32 /dev/zero >> "$TMP/x.npy"
dh-npy import -F z "$TMP/x.npy" > "$TMP/x.dhs"
[ -x "$TMP/tiny" ] && [ "$("$TMP/tiny" "$TMP/x.dhs")" = "features 4" ] || t_fail "tiny program: $("$TMP/tiny" "$TMP/x.dhs" 2>&1)"
t_end
t_done
