#!/usr/bin/env bash
# The CPU-scale reproduction of MemCollab's comparison (docs/reproduction.md): Qwen2.5-Coder-0.5B and
# -1.5B (embedded, llama.cpp), each as target, with no memory, self-memory, self-contrast, direct transfer
# (the other model's self-memory) and MemCollab (cross-model), gated and ungated, on HumanEval (all),
# MBPP test (100 seeded) and GSM8K test (60 seeded).
#
#   bash scripts/reproduce_cpu.sh banks                 # build the memory banks (resumable)
#   TARGETS=qwen25_coder_05b bash scripts/reproduce_cpu.sh evals   # evaluate one target (or both: default)
#   bash scripts/reproduce_cpu.sh leaderboard           # docs/reproduction/ from every finished run
# BANKS=... and CONDITIONS=... pick a part (the lists below); TARGETS picks the targets. A condition may
# also be bank:NAME (any bank under conf/bank/), and EVAL_ARGS="..." adds overrides to every evaluation,
# e.g. EVAL_ARGS="retrieval=embedding retrieval.top_k=1" for the retrieval rows and the top-k sweep.
#
# Every stage resumes after an interruption: the builds keep per-record JSONL in outputs/build/, and the
# evaluations reuse lm-eval's request cache (outputs/repro/cache/<target>), so a re-run generates only
# what is missing. Banks go to memcollab_eval/banks/repro_* (the conf/bank/repro_*.yaml entries).
# Needs the 1.5B model: MODELS="smollm2_135m qwen25_coder_05b qwen25_coder_15b" bash scripts/install.sh
# On a 2-core machine run two targets side by side, one core each:
#   TARGETS=qwen25_coder_05b taskset -c 0 bash scripts/reproduce_cpu.sh evals &
#   TARGETS=qwen25_coder_15b taskset -c 1 bash scripts/reproduce_cpu.sh evals &
# (llama.cpp uses as many threads as the CPUs it may run on.) PROTOCOL=agent evaluates multi-turn (on a
# seeded half of the set by default, see EVAL_SET below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
# Building banks reads the training pools, which are not shipped with the package: MEMCOLLAB_DATA_DIR must name
# a folder that holds them. Evaluations read the evaluation sets shipped in the package unless it is set.
OUT="${OUT:-outputs/repro}"
PROTOCOL="${PROTOCOL:-single_turn}"
SMALL=qwen25_coder_05b
BIG=qwen25_coder_15b
TARGETS="${TARGETS:-$SMALL $BIG}"
CONDITIONS="${CONDITIONS:-none memcollab self transfer self_contrast memcollab_ungated memcollab_validated}"
BANKS="${BANKS:-memcollab memcollab_ungated memcollab_validated self self_contrast}"
PKG_BANKS=memcollab_eval/banks
# The single-turn set; an agent episode costs several replies, so PROTOCOL=agent defaults to a seeded half of it
# (a separate table: agent and single-turn runs are never combined). EVAL_SET="..." overrides either.
if [[ $PROTOCOL == agent ]]; then
  DEFAULT_SET="benchmarks=[gsm8k,mbpp,humaneval] limit=30 limits.mbpp=50 limits.humaneval=82 subset=seeded"
else
  DEFAULT_SET="benchmarks=[gsm8k,mbpp,humaneval] limit=60 limits.mbpp=100 limits.humaneval=null subset=seeded"
fi
read -ra EVAL_SET <<< "${EVAL_SET:-$DEFAULT_SET}"
read -ra EVAL_ARGS <<< "${EVAL_ARGS:-}"

short() { [[ $1 == "$SMALL" ]] && echo 05b || echo 15b; }
other() { [[ $1 == "$SMALL" ]] && echo "$BIG" || echo "$SMALL"; }

# The committed repro_* banks were built before evidence gating: these overrides rebuild them as
# they were (conf/build.yaml now turns the evidence gates on for new banks), one request at a time as they
# were decoded (batch_size=1; batched greedy decoding can round differently).
LEGACY_GATES=(distill_prompt_version=v2 distill_samples=1 gates.difference_lint=false gates.restate_lint=false gates.resolve=false
              gates.validate=false gates.validate_unit=category gates.validate_per_category=3 batch_size=1)

build() {  # build NAME WORK_DIR ARGS...: one bank, resumable
  local name=$1 work=$2
  shift 2
  echo "== bank $name"
  "$PY" -m memcollab_eval.build pool=repro "work_dir=$work" "bank.name=$name" "bank.out_dir=$PKG_BANKS/$name" \
    "${LEGACY_GATES[@]}" "$@"
}

banks() {
  # Cross-model and self-memory banks share one greedy work directory: the trajectories are made once.
  local common=("sources=[$BIG,$SMALL]" summarizer=$BIG)
  for b in $BANKS; do
    case $b in
      memcollab) build repro_memcollab outputs/build/repro "${common[@]}" ;;
      memcollab_ungated) build repro_memcollab_ungated outputs/build/repro "${common[@]}" \
        gates.lint=false gates.near_duplicate_threshold=0.999 ;;
      memcollab_validated) build repro_memcollab_validated outputs/build/repro "${common[@]}" gates.validate=true ;;
      self) for m in $SMALL $BIG; do
          build "repro_self_$(short $m)" outputs/build/repro method=self "sources=[$m]" summarizer=$BIG
        done ;;
      # self-contrast samples at temperature 0.7: a work directory of its own per model
      self_contrast) for m in $SMALL $BIG; do
          build "repro_self_contrast_$(short $m)" "outputs/build/repro_self_contrast_$(short $m)" \
            method=self_contrast "sources=[$m]" summarizer=$BIG
        done ;;
      *) echo "unknown bank kind $b" >&2; exit 2 ;;
    esac
  done
}

evaluate() {  # evaluate TARGET BANK [ARGS...]
  local target=$1 bank=$2
  shift 2
  echo "== evaluate $target with $bank $*"
  "$PY" -m memcollab_eval "+target=$target" "+bank=$bank" "${EVAL_SET[@]}" "protocol=$PROTOCOL" use_cache=true \
    "output_dir=$OUT" "${EVAL_ARGS[@]}" "$@"
}

evals() {
  for t in $TARGETS; do
    for c in $CONDITIONS; do
      case $c in
        none) evaluate "$t" none ;;
        memcollab|memcollab_ungated|memcollab_validated) evaluate "$t" "repro_$c" ;;
        self) evaluate "$t" "repro_self_$(short "$t")" ;;
        self_contrast) evaluate "$t" "repro_self_contrast_$(short "$t")" ;;
        # the other model's entries name the other model: retrieval must not filter by identity
        transfer) evaluate "$t" "repro_self_$(short "$(other "$t")")" retrieval=no_model_filter ;;
        bank:*) evaluate "$t" "${c#bank:}" ;;
        *) echo "unknown condition $c" >&2; exit 2 ;;
      esac
    done
  done
}

leaderboard() {
  "$PY" -m memcollab_eval.leaderboard "$OUT" --out docs/reproduction --bootstrap 1000
  # per memory run: which entries were in the prompts memory fixed or broke (the newest finished run of each
  # protocol; an agent run's report gets the suffix .agent)
  mkdir -p docs/reproduction/attribution
  for bank_dir in "$OUT"/*/repro_*/; do
    local target bank
    target=$(basename "$(dirname "$bank_dir")")
    bank=$(basename "$bank_dir")
    for proto in single_turn agent; do
      local run suffix=""
      [[ $proto == agent ]] && suffix=.agent
      # summary.json is written when a run has finished; its "protocol" says which table the run belongs to
      run=$(grep -l "\"protocol\": \"$proto\"" "$bank_dir"*/summary.json 2>/dev/null | sort | tail -n 1 || true)
      [[ -n $run ]] || continue
      "$PY" -m memcollab_eval.bank attribute "$(dirname "$run")" \
        --out "docs/reproduction/attribution/${target}__${bank}${suffix}.md"
    done
  done
  # per bank, over every finished run of every target and protocol: what each entry served, fixed and broke,
  # and the retirement candidates (README "Governing a shared bank")
  mkdir -p docs/reproduction/audit
  for bank in $(ls -d "$OUT"/*/repro_*/ 2>/dev/null | xargs -n1 basename | sort -u); do
    [[ -d memcollab_eval/banks/$bank ]] || continue
    "$PY" -m memcollab_eval.bank audit "memcollab_eval/banks/$bank" "$OUT"/*/"$bank" \
      --out "docs/reproduction/audit/${bank}.md" --propose "docs/reproduction/audit/${bank}.retire.json"
  done
}

case "${1:-}" in
  banks) : "${MEMCOLLAB_DATA_DIR:?set MEMCOLLAB_DATA_DIR to a folder with math_train/train.jsonl, gsm8k/train.jsonl and mbpp/{train,validation,prompt}.jsonl}"
         export MEMCOLLAB_DATA_DIR; banks ;;
  evals) evals ;;
  leaderboard) leaderboard ;;
  all) banks; evals; leaderboard ;;
  *) echo "usage: bash scripts/reproduce_cpu.sh banks|evals|leaderboard|all" >&2; exit 2 ;;
esac
