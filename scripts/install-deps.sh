#!/usr/bin/env bash
# Installs everything nftproxy needs to build, run and test on Debian 12.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential cmake pkg-config ninja-build clang
  # clang's ASan/UBSan/LSan and libFuzzer runtimes and <fuzzer/FuzzedDataProvider.h>
  # (only recommended by clang-14), and llvm-symbolizer for their reports:
  # scripts/sanitize.sh and scripts/fuzz.sh
  libclang-rt-14-dev llvm-14
  libnftnl-dev libmnl-dev libjemalloc-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nftables iproute2 iptables conntrack socat man-db strace
  python3 python3-grpcio python3-protobuf python3-yaml
  # the Debian package's test: systemd-analyze verify (not run as init)
  systemd
  # the static build (NFTPROXY_STATIC=ON) links these archives directly
  # (libgrpc++-dev pulls them in already)
  libssl-dev libc-ares-dev libre2-dev zlib1g-dev
  # a real Prometheus server and promtool for tests/integration/test_metrics.py
  prometheus
  # etcd's v3 API definitions (the build generates its client from them) and
  # a real etcd server and etcdctl for the tests
  golang-etcd-server-dev etcd-server etcd-client
  # the DNS responder's messages (libldns.a too, for the static build), and
  # tests/integration/test_dns.py's clients, upstream resolver and dnsperf
  libldns-dev bind9-dnsutils dnsmasq-base curl dnsperf
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
