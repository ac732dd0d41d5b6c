#!/bin/sh
# The build matrix (issue 7): the headers compile, link and run in every supported configuration,
# under gcc and clang (and g++ / clang++ for C++), with the strict flags of STYLE.md 2.13 and
# -Werror. Configurations: declarations only; implementation and use in two units; C++;
# FLOWPIC_STATIC; FLOWPIC_NO_STDIO; the caller's allocator (and the #error when only part of it
# is given); with and without -fopenmp; the examples with a plain `cc examples/X.c -lm`.
# A compiler that is not installed is skipped with a note (CI installs clang).
# Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${BUILD:-build}/matrix
mkdir -p "$OUT"
WARN="-std=c99 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wstrict-prototypes \
-Wmissing-prototypes -Wcast-qual -Wundef -Wdouble-promotion -Wformat=2 -Werror"
# C++ has no -std=c99 / -Wstrict-prototypes / -Wmissing-prototypes; the rest holds
WARNXX="-std=c++11 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wcast-qual -Wundef \
-Wdouble-promotion -Wformat=2 -Werror"
M=tests/matrix
passed=0
failed=0
skipped=""

# run NAME COMMAND...: one configuration; its output is shown only when it fails
run()
{
    name=$1
    shift
    if "$@" > "$OUT/log" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: $*"
        cat "$OUT/log"
    fi
}

# build_run NAME CC FLAGS SOURCES...: compile and link, then the program must print "ok"
build_run()
{
    name=$1 cc=$2 flags=$3
    shift 3
    run "$name" sh -c "$cc $flags -O1 -I. -o $OUT/prog $* -lm && $OUT/prog | grep -qx ok"
}

for cc in gcc clang; do
    if ! command -v $cc > /dev/null 2>&1; then
        skipped="$skipped $cc"
        continue
    fi
    run "$cc: declarations only" $cc $WARN -I. -c -o "$OUT/use.o" $M/use.c
    build_run "$cc: two units" $cc "$WARN" tests/impl.c $M/use.c
    build_run "$cc: FLOWPIC_STATIC" $cc "$WARN -DFLOWPIC_STATIC -DMATRIX_IMPL" $M/use.c
    build_run "$cc: FLOWPIC_NO_STDIO" $cc "$WARN -DFLOWPIC_NO_STDIO" tests/impl.c $M/use.c
    build_run "$cc: custom allocator" $cc "$WARN -DMATRIX_ALLOCATOR" $M/alloc.c $M/use.c
    run "$cc: half an allocator is an error" sh -c "! $cc -I. -c -o $OUT/half.o $M/half_allocator.c 2>&1 | grep -q 'define all of'; test \$? = 1"
    if echo 'int main(void){return 0;}' | $cc -fopenmp -x c -o "$OUT/omp" - > /dev/null 2>&1; then
        build_run "$cc: -fopenmp" $cc "$WARN -fopenmp" tests/impl.c $M/use.c
        run "$cc: the CLI with -fopenmp" $cc $WARN -fopenmp -O1 -o "$OUT/flowpic_omp" examples/flowpic.c -lm
    else
        skipped="$skipped $cc-fopenmp"
    fi
    for ex in examples/*.c; do
        run "$cc: plain $ex" $cc -o "$OUT/example" "$ex" -lm
        run "$cc: strict $ex" $cc $WARN -O1 -o "$OUT/example" "$ex" -lm
    done
done

for cxx in g++ clang++; do
    if ! command -v $cxx > /dev/null 2>&1; then
        skipped="$skipped $cxx"
        continue
    fi
    build_run "$cxx: C++ two units" $cxx "-x c++ $WARNXX" tests/impl.c $M/use.c
    build_run "$cxx: C++ FLOWPIC_STATIC" $cxx "-x c++ $WARNXX -DFLOWPIC_STATIC -DMATRIX_IMPL" $M/use.c
    build_run "$cxx: C++ custom allocator, no stdio" $cxx "-x c++ $WARNXX -DMATRIX_ALLOCATOR -DFLOWPIC_NO_STDIO" \
        $M/alloc.c $M/use.c
done

[ -n "$skipped" ] && echo "matrix: not installed, skipped:$skipped"
echo "matrix: $passed configurations built and ran"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
