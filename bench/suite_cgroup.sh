#!/bin/bash
# All the CPU of a command's process tree, daemonized children included (the embedded
# PostgreSQL servers, pgbouncer): runs it in its own cgroup (cgroup v1 cpuacct, as on the
# project's 2-core machine; needs root) and prints wall, CPU-s and anything left running.
#   bench/suite_cgroup.sh NAME COMMAND...      e.g.
#   bench/suite_cgroup.sh full .venv/bin/pytest -p no:cacheprovider
#   CPUPROF_DIR=/tmp/prof PYTHONPATH=$PWD:$PWD/bench bench/suite_cgroup.sh prof \
#       .venv/bin/pytest -p suite_cpuprof     # + per test: python bench/suite_cpuprof.py /tmp/prof
name=suite_$1
shift
cg=/sys/fs/cgroup/cpuacct/$name
mkdir -p "$cg" || exit 1
start=$(date +%s.%N)
bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"
rc=$?
end=$(date +%s.%N)
for _ in $(seq 1 50); do  # servers stopping after the command ended
    [ -z "$(cat "$cg/cgroup.procs")" ] && break
    sleep 0.2
done
left=$(tr '\n' ' ' < "$cg/cgroup.procs")
usage=$(cat "$cg/cpuacct.usage")
stat=$(tr '\n' ' ' < "$cg/cpuacct.stat")
echo "CGROUP $name rc=$rc wall=$(echo "$end - $start" | bc) cpu_s=$(echo "scale=2; $usage/1000000000" | bc) $stat(ticks=1/100 s) leftover=[$left]"
[ -z "$left" ] && rmdir "$cg"
exit $rc
