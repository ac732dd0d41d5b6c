#!/bin/sh
# After shell tests ran the CLI as `valgrind -q --log-file=DIR/%p.log ...` (make test-valgrind):
# every log must be empty. A script may not look at every exit status of the CLI, and a leak is
# reported only at exit, after the outputs are complete; the logs see every error. Removes the
# logs it checked, so each step of make test-valgrind is judged on its own.
set -u
dir=${1:?usage: valgrind_logs.sh DIR}
bad=0
for f in "$dir"/*.log; do
    [ -e "$f" ] || continue
    if [ -s "$f" ]; then
        echo "valgrind: errors in $f:"; cat "$f"; bad=$((bad + 1))
    fi
done
n=$(find "$dir" -name '*.log' | wc -l)
[ "$bad" -eq 0 ] && rm -f "$dir"/*.log
echo "valgrind_logs: $n processes, $bad with errors"
[ "$bad" -eq 0 ]
