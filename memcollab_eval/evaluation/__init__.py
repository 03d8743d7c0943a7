"""The evaluate stage: one target, one bank, several benchmarks, with and without memory.

tasks (the lm-eval task twins and their process_docs / process_results hooks) <- job (the run:
model, tasks, simple_evaluate, results, summary) <- cli (``python -m memcollab_eval``);
task_yaml writes the same tasks as YAML for ``lm_eval --include_path tasks``. Nothing is
imported here, so the per-sample schema's readers do not load lm-eval through this package.
"""
