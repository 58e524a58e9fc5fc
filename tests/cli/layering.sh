#!/usr/bin/env bash
# The layout's rules, from the code: every #include in a room names a header
# of that room or of a room its README's "May include:" line allows; the
# third-party headers stay in their rooms; and no library object but the
# program conventions (formats/prog) calls exit or writes to stdout/stderr.
. "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
rooms=$(ls -d kernels/*/ formats/*/ | sed 's|/$||')
declare -A room_of allow
for r in $rooms; do
  for h in "$r"/*.h; do [ -f "$h" ] && room_of[$(basename "$h")]=$r; done
done
t_begin "layering_readmes"
for r in $rooms; do
  line=$(grep -m1 '^May include:' "$r/README.md" 2>/dev/null) || { t_fail "$r: no README.md with a 'May include:' line"; continue; }
  allow[$r]=" $(echo "${line#May include:}" | tr ',' ' ' | tr -s ' ') "
done
t_end
t_begin "layering_includes"
n=0
for r in $rooms; do
  for f in "$r"/*.[ch] "$r"/*.cu; do
    [ -f "$f" ] || continue
    while IFS= read -r inc; do
      n=$((n+1))
      to=${room_of[$inc]:-}
      [ -n "$to" ] || { t_fail "$f includes \"$inc\", which is in no room"; continue; }
      [ "$to" = "$r" ] && continue
      case "${allow[$r]}" in *" $(basename "$to") "*) ;; *) t_fail "$f includes $inc from $to, which ${r}'s README does not allow (May include:${allow[$r]})";; esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  done
done
[ $n -gt 50 ] || t_fail "only $n includes seen"
t_end
# third-party headers in their rooms only
t_begin "layering_third_party"
check_hdr() {  # header allowed-room...
  local h=$1; shift
  for f in $(grep -rl "#include <$h>" kernels formats 2>/dev/null); do
    local ok=0; for a in "$@"; do case $f in "$a"/*) ok=1;; esac; done
    [ $ok = 1 ] || t_fail "$f includes <$h> (only in $*)"
  done
}
check_hdr msgpack.h formats/stream
check_hdr archive.h formats/image
check_hdr jpeglib.h formats/image
check_hdr png.h formats/image
check_hdr cudnn.h kernels/dk
check_hdr getopt.h formats/prog
check_hdr mpi.h kernels/train
t_end
# nm: exit, abort and the standard streams only in libdhprog.a
lib=${DH_TESTS:-build/rel/tests}/../lib
t_begin "layering_nm_no_exit_or_print"
if [ ! -f "$lib/libdeephash.a" ]; then t_fail "no $lib/libdeephash.a"; else
  bad=$(nm -A "$lib/libdeephash.a" 2>/dev/null | grep -E ' U (exit|_exit|_Exit|quick_exit|abort|stdout|stderr|printf|vprintf|puts|putchar|perror|__printf_chk|__vprintf_chk)$')
  [ -z "$bad" ] || t_fail "$(echo "$bad" | head -3 | tr '\n' ' ')"
  nm -A "$lib/libdhprog.a" 2>/dev/null | grep -qE ' U (exit|stderr)$' || t_fail "libdhprog.a does not call exit (nm found nothing: wrong library?)"
fi
t_end
t_done
