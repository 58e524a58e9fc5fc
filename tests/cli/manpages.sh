#!/usr/bin/env bash
# Every program has a man page with the required sections, the pages are
# mandoc-lint clean, and every --help/--version works.
. "$(dirname "$0")/../lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
progs=$(cd "$root" && ls bin/dh-*.c tools/dh-*.c 2>/dev/null | sed 's|.*/||; s|\.c$||')
for p in $progs; do
  t_begin "man_$p"
  m="$root/man/$p.1"
  if [ ! -f "$m" ]; then t_fail "no man/$p.1"; t_end; continue; fi
  for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -qE "^\.S[Hh] \"?$s\"?\$" "$m" || t_fail "section $s missing"
  done
  if command -v mandoc >/dev/null; then
    lint=$(mandoc -T lint -W warning "$m" 2>&1)
    [ -z "$lint" ] || t_fail "mandoc: $(echo "$lint" | head -2)"
  fi
  "$p" --help > "$TMP/h" 2>&1 && grep -q "$p" "$TMP/h" || t_fail "--help"
  "$p" --version 2>&1 | grep -q "^$p (deephash) " || t_fail "--version"
  "$p" --no-such-option > /dev/null 2> "$TMP/e"; rc=$?
  [ $rc = 2 ] || t_fail "unknown option: exit $rc, not 2"
  [ "$(grep -c . "$TMP/e")" = 1 ] && grep -q "^$p: .*no-such-option" "$TMP/e" || t_fail "unknown option: stderr '$(head -c 200 "$TMP/e")'"
  t_end
done
for m in "$root"/man/*.5 "$root"/man/*.7; do
  [ -f "$m" ] || continue
  t_begin "man_$(basename "$m")"
  if command -v mandoc >/dev/null; then
    lint=$(mandoc -T lint -W warning "$m" 2>&1)
    [ -z "$lint" ] || t_fail "mandoc: $(echo "$lint" | head -2)"
  fi
  t_end
done
t_done
