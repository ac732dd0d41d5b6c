# Shared by the shell tests: DATA (the shared captures: $DATA, ../shared/data beside this
# checkout, or /work/shared/data), FLOWPIC, REDUCED, and check NAME CONDITION, which counts passes
# and failures. Source it from the top of the repository.
# FLOWPIC is the CLI or a command that runs it, split into words where it is used
# (FLOWPIC="valgrind -q ./flowpic"). FLOWPIC_REDUCED=1 (make test-valgrind) runs the same
# commands on the small net for fewer epochs, so that training finishes under valgrind; the
# accuracy bars, which only the full-scale run can meet, are then skipped with the reason.
if [ -z "${DATA:-}" ]; then
    for d in ../shared/data /work/shared/data; do [ -d "$d" ] && DATA=$d && break; done
fi
FLOWPIC=${FLOWPIC:-./flowpic}
REDUCED=${FLOWPIC_REDUCED:-0}
passed=0
failed=0
check() { # name, condition
    if eval "$2"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}
