#!/usr/bin/env bash
# The option grammar of deephash(7) (formats/prog/dh_opts.h), for every
# program in $DH_BIN: each reserved short letter either means its reserved
# long option (as the program's --help pairs them) or is unknown or refused
# (exit 2, one line); a refusal names the new letter in the one format
#   dh-feats: -b is --bits in deephash; the batch size is -B (--batch)
# A program that has a reserved long option has its letter too, unless it
# refuses the letter. -h and -V do what --help and --version do.
# Table-driven: a program that lands later is covered without editing this
# file; the programs in PENDING (their owners convert them) SKIP, with the
# reason, where they do not follow the grammar yet.
. "$(dirname "$0")/../lib.sh"

# letter: reserved long option(s), '|' between alternatives
declare -A RESERVED=([b]="--bits" [B]="--batch" [d]="--device" [D]="--db" [m]="--model|--net" [o]="--output"
  [s]="--seed" [n]="--limit|--rows" [j]="--threads" [q]="--quiet" [h]="--help" [V]="--version")
# the letters that moved: "program letter new-letter"; the refusal must name the new one
MOVED="dh-feats b B
dh-pretrain b B
dh-pretrain n N
dh-ingest s S
dh-info m M"
# programs converted by their owners (SKIP, not FAIL, while they do not follow the grammar)
PENDING=" "

progs=$(cd "$DH_BIN" && ls dh-* 2>/dev/null)
[ -n "$progs" ] || { echo "FAIL options: no programs in $DH_BIN"; exit 1; }

# the reserved long option as a refusal names it (dh_letters in formats/prog/dh_prog.c)
declare -A NAMED=([m]="--model" [n]="--limit/--rows")
# refusal_re PROG LETTER : the one format of a refusal of -LETTER by PROG
refusal_re() {
  local now='(-[A-Za-z] \(--[a-z0-9-]+\)|--[a-z0-9-]+)'
  if [ -n "${RESERVED[$2]:-}" ]; then
    echo "^$1: -$2 is ${NAMED[$2]:-${RESERVED[$2]}} in deephash; the [^;]+ is $now\$"
  else
    echo "^$1: -$2 is not an option of $1 any more; the [^;]+ is $now\$"
  fi
}

for p in $progs; do
  t_begin "options_$p"
  problems=""
  problem() { problems="$problems${problems:+; }$*"; }
  "$p" --help > "$TMP/help" 2>&1 || problem "--help exit status"
  # -X, --long pairs and long-only options, as --help lists them
  declare -A short_of=() long_only=()
  while read -r l lo; do short_of[$l]=$lo; done < <(sed -nE 's/^ +-([A-Za-z]), (--[a-z0-9-]+).*/\1 \2/p' "$TMP/help")
  while read -r lo; do long_only[$lo]=1; done < <(sed -nE 's/^ +(--[a-z0-9-]+).*/\1/p' "$TMP/help")
  for l in "${!RESERVED[@]}"; do
    alts=${RESERVED[$l]}
    if [ -n "${short_of[$l]:-}" ]; then
      case "|$alts|" in *"|${short_of[$l]}|"*) ;; *) problem "-$l is ${short_of[$l]} (reserved: $alts)";; esac
      continue
    fi
    # not listed: unknown or refused, exit 2, one line
    timeout 20 "$p" -"$l" 1 < /dev/null > /dev/null 2> "$TMP/err"; rc=$?
    n=$(grep -c . "$TMP/err")
    if [ $rc != 2 ] || [ "$n" != 1 ]; then problem "-$l (not in --help): exit $rc, $n stderr lines: $(head -c 120 "$TMP/err")"; continue; fi
    if grep -qE "$(refusal_re "$p" "$l")" "$TMP/err"; then
      refused=1
    elif grep -qF "$p: invalid option or missing value: '-$l'" "$TMP/err"; then
      refused=0
    else
      problem "-$l: neither unknown nor a grammar refusal: $(head -c 160 "$TMP/err")"; continue
    fi
    # a reserved long option the program has needs its letter, unless the letter is refused
    for lo in ${alts//|/ }; do
      [ -n "${long_only[$lo]:-}" ] && [ $refused = 0 ] && problem "has $lo but -$l is unknown"
    done
  done
  # -h and -V are --help and --version
  "$p" -h > "$TMP/h2" 2>&1 && cmp -s "$TMP/help" "$TMP/h2" || problem "-h differs from --help"
  [ "$("$p" -V 2>&1)" = "$("$p" --version 2>&1)" ] || problem "-V differs from --version"
  unset short_of long_only
  if [ -z "$problems" ]; then t_end
  else case $PENDING in
    *" $p "*) t_skip "options_$p" "not yet on the grammar (its owner converts it): $problems";;
    *) t_fail "$problems"; t_end;;
  esac; fi
done

# the moved letters: the refusal in exactly the one format, naming the new letter the program has
while read -r p l new; do
  [ -x "$DH_BIN/$p" ] || continue
  t_begin "moved_${p}_-$l"
  for args in "-$l 1" "-$l" "-q$l 1" "-${l}64"; do
    # shellcheck disable=SC2086
    "$p" $args < /dev/null > /dev/null 2> "$TMP/err"; rc=$?
    [ $rc = 2 ] || t_fail "'$p $args': exit $rc, not 2"
    [ "$(grep -c . "$TMP/err")" = 1 ] || t_fail "'$p $args': $(grep -c . "$TMP/err") stderr lines"
    grep -qE "$(refusal_re "$p" "$l")" "$TMP/err" || t_fail "'$p $args': $(head -c 160 "$TMP/err")"
    grep -qF -- "is -$new (--" "$TMP/err" || t_fail "'$p $args': does not name -$new: $(head -c 160 "$TMP/err")"
  done
  "$p" --help | grep -qE "^ +-$new, --" || t_fail "--help does not list -$new"
  t_end
done <<< "$MOVED"

# the exact wording the other programs share
t_begin "moved_message_format"
dh-feats -b 64 2> "$TMP/err"; rc=$?
[ $rc = 2 ] && [ "$(cat "$TMP/err")" = "dh-feats: -b is --bits in deephash; the batch size is -B (--batch)" ] ||
  t_fail "exit $rc: $(cat "$TMP/err")"
t_end

# the new letters work as their long options
t_begin "new_letters_work"
npy_header '<f4' '(6, 3)' > "$TMP/x.npy"; head -c 72 /dev/zero >> "$TMP/x.npy"
dh-npy import -F z -o "$TMP/x.dhs" "$TMP/x.npy" || t_fail "dh-npy -o"
[ "$(dh-info -M "$TMP/x.dhs")" = "$(dh-info --meta "$TMP/x.dhs")" ] || t_fail "dh-info -M"
dh-head -q -n 2 -o "$TMP/h.dhs" "$TMP/x.dhs" && dh-info -v "$TMP/h.dhs" | grep -q ' 2 rows' || t_fail "dh-head -q -n -o"
dh-cat -q -o "$TMP/c.dhs" "$TMP/x.dhs" "$TMP/x.dhs" && dh-info -v "$TMP/c.dhs" | grep -q ' 12 rows' || t_fail "dh-cat -o"
dh-npy export -q -F z -o "$TMP/y.npy" "$TMP/c.dhs" && [ "$(head -c 6 "$TMP/y.npy" | tail -c 5)" = NUMPY ] || t_fail "dh-npy export -o"
t_end
t_done
