"""python -m memcollab_eval: evaluate a target with and without a memory bank."""

from memcollab_eval.evaluation.cli import main

if __name__ == "__main__":
    main()
