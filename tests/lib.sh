# Shared by the shell tests: DATA (the shared captures: $DATA, ../shared/data beside this
# checkout, or /work/shared/data), FLOWPIC, and check NAME CONDITION, which counts passes and
# failures. Source it from the top of the repository.
if [ -z "${DATA:-}" ]; then
    for d in ../shared/data /work/shared/data; do [ -d "$d" ] && DATA=$d && break; done
fi
FLOWPIC=${FLOWPIC:-./flowpic}
passed=0
failed=0
check() { # name, condition
    if eval "$2"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}
