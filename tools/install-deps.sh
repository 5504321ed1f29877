#!/usr/bin/env bash
# Install the Debian packages ftune builds and tests with, only if missing (idempotent, as root).
# libopenblas0-pthread: python3-torch and numpy link the libblas.so.3 alternative, which without
# it is Netlib's reference BLAS (--no-install-recommends leaves OpenBLAS out): PyTorch's fp32
# reference in bench/train.sh then trains stories15M at ~40 tok/s instead of ~460, an unfair
# baseline. With it installed the alternative points at OpenBLAS.
set -euo pipefail
pkgs=(build-essential clang libclang-rt-14-dev pkg-config
      libdnnl-dev libcjson-dev libyaml-dev libpcre2-dev libutf8proc-dev
      python3 python3-torch python3-numpy python3-jinja2 libopenblas0-pthread nodejs npm
      ca-certificates bsdgames fortunes-min)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from the machine image rather than Debian: accept those.
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ftune: installing Debian packages: ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
