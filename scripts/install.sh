#!/usr/bin/env bash
# Set up memcollab-eval on a fresh Debian/Ubuntu machine with Python >= 3.10:
# system packages for the code sandbox, a virtualenv in .venv, and the package.
#   EXTRAS=dev,cpu bash scripts/install.sh     (default: dev,cpu)
# The cpu extra builds llama-cpp-python from source (about 5 minutes on 2 cores),
# with -DGGML_NATIVE=OFF because the -march=native build crashes on some CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-dev,cpu}"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q libseccomp.so.2 || need_apt+=(libseccomp2)
if (( ${#need_apt[@]} )); then
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  echo "installing system packages: ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
echo "installed memcollab-eval with extras [${EXTRAS}] into .venv"
