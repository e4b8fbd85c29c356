#!/usr/bin/env bash
# ringlog's Disruptor peer: compiles DisruptorPeer.java (beside this script) against Debian's
# libdisruptor-java and runs it. Usage: run.sh [EVENTS [RUNS]]. Prints "NAME VALUE" lines.
# Java, the Disruptor and HdrHistogram jars are installed with apt-get when absent (as root);
# without them it exits 3 saying what to install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
jars=/usr/share/java/disruptor.jar:/usr/share/java/hdrhistogram.jar
packages="default-jdk-headless libdisruptor-java libhdrhistogram-java"
missing() { [ ! -f /usr/share/java/disruptor.jar ] || [ ! -f /usr/share/java/hdrhistogram.jar ] || ! command -v javac >/dev/null; }
if missing && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # shellcheck disable=SC2086
  (apt-get install -y -qq $packages || { apt-get update -qq && apt-get install -y -qq $packages; }) >/dev/null 2>&1 || true
fi
if missing; then
  echo "the Disruptor peer needs Java and Debian's libdisruptor-java: apt-get install $packages" >&2
  exit 3
fi
build=${XDG_CACHE_HOME:-$HOME/.cache}/ringlog/disruptor-peer
mkdir -p "$build"
if [ ! -f "$build/DisruptorPeer.class" ] || [ "$here/DisruptorPeer.java" -nt "$build/DisruptorPeer.class" ]; then
  javac -d "$build" -cp "$jars" "$here/DisruptorPeer.java"
fi
exec java -Xms1g -Xmx1g -XX:+UseParallelGC -cp "$build:$jars" DisruptorPeer "$@"
