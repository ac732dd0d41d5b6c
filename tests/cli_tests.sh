#!/bin/sh
# Golden CLI tests: each tests/cli/<case>/ holds `cmd` (a shell line run from the top with
# $FLOWPIC and a scratch directory $TMP), `status` (the expected exit status) and `stderr` (the
# expected standard error, with the scratch directory written as TMP; left empty for a usage
# error, only the status is checked). CLI_SKIP="case ..." leaves cases out.
# FLOWPIC may be a command that runs the CLI (FLOWPIC="valgrind -q ./flowpic"); a case that needs
# the binary itself (to copy it) uses $FLOWPIC_BIN, the last word, and $FLOWPIC_WRAP, the rest.
set -u
cd "$(dirname "$0")/.." || exit 1
FLOWPIC=${FLOWPIC:-./flowpic}
FLOWPIC_BIN=${FLOWPIC##* }
FLOWPIC_WRAP=${FLOWPIC%"$FLOWPIC_BIN"}
export FLOWPIC FLOWPIC_BIN FLOWPIC_WRAP
passed=0
failed=0
for dir in tests/cli/*/; do
    name=$(basename "$dir")
    case " ${CLI_SKIP:-} " in *" $name "*) echo "skip $name"; continue ;; esac
    TMP=$(mktemp -d)
    export TMP
    sh -c "$(cat "$dir/cmd")" > "$TMP/.out" 2> "$TMP/.err"
    status=$?
    sed "s|$TMP|TMP|g" "$TMP/.err" > "$TMP/.err2"
    want=$(cat "$dir/status")
    if [ "$status" != "$want" ]; then
        echo "FAIL $name: exit status $status, expected $want"; cat "$TMP/.err"; failed=$((failed + 1))
    elif { [ -s "$dir/stderr" ] || [ "$want" != 2 ]; } && ! cmp -s "$TMP/.err2" "$dir/stderr"; then
        # (a usage error with an empty expected stderr only checks the status: usage text changes)
        echo "FAIL $name: stderr differs (< expected, > got)"; diff "$dir/stderr" "$TMP/.err2"; failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
    rm -rf "$TMP"
done
echo "cli: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
