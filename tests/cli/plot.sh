#!/usr/bin/env bash
# dh-plot: dh-map --json results drawn with gnuplot (PNG, SVG, several
# results, standard input), the script, and bad input.
. "$(dirname "$0")/../lib.sh"
: "${DH_TESTS:=build/rel/tests}"
GEN="$DH_TESTS/test_rank"
if [ ! -x "$GEN" ]; then t_skip plot_cli "no $GEN (test_rank builds the code streams)"; exit 0; fi
"$GEN" gen 30 24 4 1 > "$TMP/q24" && "$GEN" gen 400 24 4 2 > "$TMP/db24"
"$GEN" gen 25 65 3 3 flip=3 > "$TMP/q65" && "$GEN" gen 300 65 3 4 flip=3 > "$TMP/db65"
dh-map -q --json --title 'A "quoted" \ title' --query "$TMP/q24" --db "$TMP/db24" > "$TMP/a.json" &&
dh-map -q --json --title B --query "$TMP/q65" --db "$TMP/db65" > "$TMP/b.json" || { echo "FAIL plot_fixture: dh-map"; exit 1; }

t_begin plot_script_has_the_data
dh-plot --script -o "$TMP/s.gp" "$TMP/a.json" "$TMP/b.json" || t_fail "dh-plot --script"
grep -q '^set terminal pngcairo' "$TMP/s.gp" && grep -q '^\$pr1 << EOD' "$TMP/s.gp" && grep -q '^\$pk0 << EOD' "$TMP/s.gp" &&
  grep -q 'title "A \\"quoted\\" \\\\ title"' "$TMP/s.gp" && grep -q 'title "B"' "$TMP/s.gp" || t_fail "script: $(head -c 300 "$TMP/s.gp")"
# every PR point of the result is in the script
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["pr_curve"]))' "$TMP/a.json")
m=$(awk '/^\$pr0 << EOD/{f=1; next} /^EOD/{f=0} f' "$TMP/s.gp" | wc -l)
[ "$n" = "$m" ] || t_fail "PR points: $m in the script, $n in the result"
t_end

# precision@k: tie-aware by default, database order with --db-order
t_begin plot_tie_aware_or_database_order
dh-plot --script -o "$TMP/t.gp" "$TMP/a.json" && dh-plot --db-order --script -o "$TMP/d.gp" "$TMP/a.json" || t_fail "dh-plot"
want=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["precision_at_k"][0]; print("%.6f %.6f" % (e["precision_tie_aware"], e["precision"]))' "$TMP/a.json")
got="$(awk '/^\$pk0 << EOD/{getline; print $2}' "$TMP/t.gp") $(awk '/^\$pk0 << EOD/{getline; print $2}' "$TMP/d.gp")"
[ "$got" = "$want" ] || t_fail "P@1 drawn: '$got', want (tie-aware, database order) '$want'"
grep -q "Precision@k (tie-aware)" "$TMP/t.gp" && grep -q "Precision@k (ties in database order)" "$TMP/d.gp" || t_fail "titles"
t_end

if command -v gnuplot >/dev/null; then
  t_begin plot_png_two_results
  dh-plot -o "$TMP/cmp.png" "$TMP/a.json" "$TMP/b.json" || t_fail "dh-plot"
  head -c 8 "$TMP/cmp.png" | od -c | grep -q 'P   N   G' || t_fail "not a PNG"
  ls "$TMP"/*.tmp* >/dev/null 2>&1 && t_fail "temporary file left"
  t_end
  t_begin plot_svg_from_stdin
  dh-map -q --json --query "$TMP/q24" --db "$TMP/db24" | dh-plot -o "$TMP/one.SVG" || t_fail "dh-plot from a pipe"
  grep -q '<svg' "$TMP/one.SVG" || t_fail "not an SVG"
  dh-plot --format svg -o - < "$TMP/b.json" | grep -q '<svg' || t_fail "-o - --format svg"
  t_end
  t_begin plot_rankings_cut_results
  dh-rank -q --db "$TMP/db24" --top 20 < "$TMP/q24" | dh-map -q --json > "$TMP/cut.json" &&
    dh-plot -o "$TMP/cut.png" "$TMP/cut.json" || t_fail "a result with null P@k"
  t_end
else
  t_skip plot_gnuplot "gnuplot not installed"
fi

t_begin plot_gnuplot_missing
mkdir -p "$TMP/nogp"; ln -sf "$(command -v dh-plot)" "$TMP/nogp/dh-plot"
PATH="$TMP/nogp" "$TMP/nogp/dh-plot" -o "$TMP/ng.png" "$TMP/a.json" 2> "$TMP/err"; rc=$?
[ $rc = 1 ] && grep -q 'gnuplot is not installed' "$TMP/err" || t_fail "exit $rc: $(cat "$TMP/err")"
[ -e "$TMP/ng.png" ] && t_fail "an image was left"
t_end

t_begin plot_help_version
dh-plot --help | grep -q -- '--output' && dh-plot --version | grep -q dh-plot || t_fail "help/version"
t_end

# ---- bad input ----
printf '{"program": "dh-map", "pr_curve": [{"precision": 1, "recall": "x"}], "precision_at_k": []}' > "$TMP/badtype.json"
printf '{"program": "dh-map", "pr_curve": []' > "$TMP/trunc.json"
printf '{"program": "dh-rank", "pr_curve": [], "precision_at_k": []}' > "$TMP/other.json"
expect_fail plot_no_output dh-plot "$TMP/a.json"
expect_fail plot_bad_extension dh-plot -o out.pdf "$TMP/a.json"
expect_fail plot_bad_format dh-plot --format gif -o out.png "$TMP/a.json"
expect_fail plot_not_json dh-plot -o "$TMP/x.png" /etc/hostname
expect_fail plot_truncated_json dh-plot -o "$TMP/x.png" "$TMP/trunc.json"
expect_fail plot_wrong_type dh-plot -o "$TMP/x.png" "$TMP/badtype.json"
expect_fail plot_not_a_result dh-plot -o "$TMP/x.png" "$TMP/other.json"
expect_fail plot_missing_file dh-plot -o "$TMP/x.png" "$TMP/nonexistent.json"
expect_fail plot_stdin_twice dh-plot -o "$TMP/x.png" - -
t_begin plot_failure_leaves_no_file
[ -e "$TMP/x.png" ] && t_fail "x.png written"
dh-plot -o "$TMP/y.png" "$TMP/badtype.json" 2> "$TMP/err"; grep -q "pr_curve\[0\]: 'recall' is a string" "$TMP/err" || t_fail "message: $(cat "$TMP/err")"
t_end
t_done
