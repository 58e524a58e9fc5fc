# tests/lib.sh — helpers for shell tests (sourced). Same protocol as
# tests/unit/check.h: one line per case, PASS/FAIL/SKIP.
#
#   . "$(dirname "$0")/../lib.sh"
#   t_begin "name"; ...; t_check CONDITION-COMMAND...; t_end
#   expect_fail "name" CMD...   # CMD must exit non-zero with one line on stderr
#
# $DH_BIN is the directory of the programs under test; $TMP a fresh scratch dir.
set -u
: "${DH_BIN:=build/rel/bin}"
DH_BIN=$(cd "$DH_BIN" && pwd)
export PATH="$DH_BIN:$PATH"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dhtest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
T_NAME=""; T_FAILED=0; T_MSG=""; T_NFAIL=0
t_begin() { T_NAME=$1; T_FAILED=0; T_MSG=""; }
t_fail()  { if [ "$T_FAILED" = 0 ]; then T_MSG="$*"; fi; T_FAILED=1; }
# t_check DESCRIPTION CMD... : CMD must succeed
t_check() { local d=$1; shift; if ! "$@" >/dev/null 2>&1; then t_fail "$d"; fi; }
t_end() {
  if [ "$T_FAILED" = 0 ]; then echo "PASS $T_NAME"; else echo "FAIL $T_NAME: $T_MSG"; T_NFAIL=$((T_NFAIL+1)); fi
}
t_skip() { echo "SKIP $1: $2"; }
# expect_fail NAME CMD... : CMD exits non-zero (not by a signal), prints
# exactly one non-empty line on stderr starting with "dh-", nothing crashes.
expect_fail() {
  local name=$1; shift
  t_begin "$name"
  "$@" >"$TMP/ef.out" 2>"$TMP/ef.err"; local rc=$?
  if [ $rc = 0 ]; then t_fail "exit status 0"; fi
  if [ $rc -ge 128 ]; then t_fail "killed by signal $((rc-128))"; fi
  local n; n=$(grep -c . "$TMP/ef.err")
  if [ "$n" != 1 ]; then t_fail "expected one stderr line, got $n: $(head -c 300 "$TMP/ef.err")"; fi
  if ! grep -q '^dh-[a-z0-9-]*: ' "$TMP/ef.err"; then t_fail "stderr not 'dh-PROG: ...': $(head -c 200 "$TMP/ef.err")"; fi
  if grep -q 'AddressSanitizer\|runtime error' "$TMP/ef.err"; then t_fail "sanitizer report"; fi
  t_end
}
t_done() { [ "$T_NFAIL" = 0 ]; }
# npy_header DESCR SHAPE : a NumPy .npy v1.0 header on stdout, e.g.
#   { npy_header '<f4' '(10, 3)'; head -c 120 /dev/urandom; } > x.npy
npy_header() {
  local dict="{'descr': '$1', 'fortran_order': False, 'shape': $2, }"
  local total=$(( 10 + ${#dict} + 1 )); local pad=$(( (64 - total % 64) % 64 )); local hl=$(( ${#dict} + pad + 1 ))
  printf '\x93NUMPY\x01\x00'
  printf "\\x$(printf %02x $((hl & 255)))\\x$(printf %02x $((hl >> 8)))"
  printf '%s' "$dict"; printf "%${pad}s" ''; printf '\n'
}
